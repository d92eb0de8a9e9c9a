package signal_test

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

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

// BenchmarkLoopbackFloor is the kernel's share of relaying one message on
// this machine, without Parley: a 200-byte message bounced between the two
// ends of one loopback TCP connection, each end waiting in a read (as a
// server's reader and a client do at one message a second per
// connection). Each op is one write, one read and one wake-up of the
// blocked reader, which is what the server pays per relayed message
// (read from the sender, write to the receiver) before any code of its
// own. cpu-µs/op counts this process's CPU time (both ends are here, so
// half of it is the floor of one side).
func BenchmarkLoopbackFloor(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	x, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	y, ok := <-accepted
	if !ok {
		b.Fatal("accept failed")
	}
	defer y.Close()
	msg := make([]byte, 200)
	echoDone := make(chan struct{})
	go func() { // the other end: read a message, send it back
		defer close(echoDone)
		buf := make([]byte, 200)
		for {
			if _, err := io.ReadFull(y, buf); err != nil {
				return
			}
			if _, err := y.Write(buf); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 200)
	start := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := x.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(x, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// Two writes, two reads and two wake-ups per round trip: per message,
	// half of the CPU of one round trip.
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(2*b.N), "cpu-µs/msg")
	x.Close()
	<-echoDone
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
