package signal_test

import (
	"context"
	"testing"

	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/pkg/protocol"
)

// BenchmarkRelay measures one signal from a WebSocket client through the
// hub to another WebSocket client, both ends in this process.
func BenchmarkRelay(b *testing.B) {
	h := signal.NewHub(signal.Options{RateLimit: 1e9, RateBurst: 1e9, ByteRate: 1 << 30, ByteBurst: 1 << 30, Outbox: 4096, OutboxBytes: 64 << 20, Capacity: func(string, string) int { return 10 }})
	url, stop := serveHub(h)
	defer stop()
	a, bb := mustDial(b, url), mustDial(b, url)
	defer a.Close()
	defer bb.Close()
	ctx := context.Background()
	if _, err := a.Join(ctx, "bench", "a", ""); err != nil {
		b.Fatal(err)
	}
	jb, err := bb.Join(ctx, "bench", "b", "")
	if err != nil {
		b.Fatal(err)
	}
	<-a.Events()
	msg := []byte(`{"type":"signal","to":"` + jb.ID + `","data":{"candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host","sdpMid":"0"}}}`)
	b.ReportAllocs()
	b.ResetTimer()
	window := make(chan struct{}, 1000) // in flight at most: the outbox never fills
	go func() {
		for i := 0; i < b.N; i++ {
			window <- struct{}{}
			a.SendRaw(ctx, msg)
		}
	}()
	for i := 0; i < b.N; i++ {
		if m := <-bb.Events(); m.Type != protocol.TypeSignal {
			b.Fatalf("got %+v", m)
		}
		<-window
	}
}
