package cluster

import (
	"context"
	"encoding/binary"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/sfu"
)

// mediaNode is a cluster node with its own SFU and stream relay.
func mediaNode(tb testing.TB, id, url string, linger time.Duration) (*Media, *sfu.SFU) {
	tb.Helper()
	var med atomic.Pointer[Media]
	s, err := sfu.New(sfu.Config{UDP: "127.0.0.1:0", TCP: "off", PublicIP: "127.0.0.1", Logger: slog.New(slog.DiscardHandler),
		OnRoomChange: func(ns sfu.Namespace, name string) {
			if m := med.Load(); m != nil {
				m.RoomChanged(ns, name)
			}
		}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	c := startNode(tb, Options{URLs: []string{url}, Node: Node{ID: id}})
	m, err := c.StartMedia(MediaOptions{SFU: s, Linger: linger})
	if err != nil {
		tb.Fatal(err)
	}
	med.Store(m)
	tb.Cleanup(m.Close) // before the node closes (cleanups run last first)
	return m, s
}

type benchSource struct{}

func (benchSource) SourceID() string       { return "bench" }
func (benchSource) RequestKeyframe(uint32) {}

// latencySink records, for each packet, the time since the instant the
// publisher wrote into the packet's payload.
type latencySink struct {
	mu   sync.Mutex
	lat  []time.Duration
	last atomic.Uint32 // the last packet's counter
}

func (s *latencySink) WriteRTP(_ *rtp.Header, payload []byte) (int, error) {
	if len(payload) < 2+12 {
		return len(payload), nil
	}
	sent := int64(binary.BigEndian.Uint64(payload[2:]))
	d := time.Duration(time.Now().UnixNano() - sent)
	s.mu.Lock()
	s.lat = append(s.lat, d)
	s.mu.Unlock()
	s.last.Store(binary.BigEndian.Uint32(payload[10:]))
	return len(payload), nil
}

func (s *latencySink) quantile(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lat) == 0 {
		return 0
	}
	l := slices.Clone(s.lat)
	slices.Sort(l)
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

// BenchmarkStreamRelay: a stream published on node a (an in-memory
// source: VP8, 1,100-byte packets, 400 packets/s, about 3.5 Mbit/s) is
// relayed to node b over an embedded NATS server on loopback. Each
// iteration is one packet. It reports the time from the publisher's
// write on a to a sink's write on b (p50, p99), the same to a sink on a
// itself (what one node costs), the difference of the p99s (what the
// relay adds), and the NATS message rate and bytes per second of the
// stream. Run: go test ./internal/cluster -run '^$' -bench StreamRelay -benchtime 4000x
func BenchmarkStreamRelay(b *testing.B) {
	srv := natsServer(b, -1, b.TempDir())
	url := srv.ClientURL()
	ma, sa := mediaNode(b, "a", url, time.Hour)
	mb, sb := mediaNode(b, "b", url, time.Hour)

	pub, err := sa.Publish(sfu.Streams, "bench", benchSource{}, sfu.TrackSpec{TrackID: "v", StreamID: "bench",
		Codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.End()
	const size = 1100
	pkt := make([]byte, 12+size)
	var n uint32
	write := func() {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(n), Timestamp: n / 12 * 3000, SSRC: 1, Marker: n%12 == 11}
		_, _ = h.MarshalTo(pkt)
		p := pkt[12:]
		p[0], p[1] = 0x10, 0x01 // a VP8 delta frame's first packet...
		if n%400 == 0 {
			p[1] = 0x00 // ...or a keyframe's, once a second
		}
		binary.BigEndian.PutUint64(p[2:], uint64(time.Now().UnixNano()))
		binary.BigEndian.PutUint32(p[10:], n)
		if err := pub.WriteRTP("", pkt); err != nil {
			b.Fatal(err)
		}
		n++
	}
	write() // a keyframe for the subscriptions to start on

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !mb.Demand(ctx, "bench") { // until a has announced the stream
		if ctx.Err() != nil {
			b.Fatal("the stream never reached b")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	edgeRoom, _ := sb.LookupRoom(sfu.Streams, "bench")
	originRoom, _ := sa.LookupRoom(sfu.Streams, "bench")
	var edgeSink, localSink latencySink
	es, err := edgeRoom.Subscribe(edgeRoom.Tracks()[0].ID, &edgeSink, sfu.SinkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()
	ls, err := originRoom.Subscribe(originRoom.Tracks()[0].ID, &localSink, sfu.SinkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer ls.Close()

	st := ma.Stats()
	out0, bytes0 := st.PacketsOut.Load(), st.BytesOut.Load()
	tick := time.NewTicker(time.Second / 400)
	defer tick.Stop()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		<-tick.C
		write()
	}
	last := n - 1
	for edgeSink.last.Load() != last || localSink.last.Load() != last {
		if ctx.Err() != nil && time.Since(start) > time.Duration(b.N)*time.Second/400+10*time.Second {
			b.Fatal("the last packet never arrived")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	elapsed := time.Since(start).Seconds()
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(edgeSink.quantile(0.5)), "relay-p50-µs")
	b.ReportMetric(us(edgeSink.quantile(0.99)), "relay-p99-µs")
	b.ReportMetric(us(localSink.quantile(0.99)), "local-p99-µs")
	b.ReportMetric(us(edgeSink.quantile(0.99)-localSink.quantile(0.99)), "added-p99-µs")
	b.ReportMetric(float64(st.PacketsOut.Load()-out0)/elapsed, "nats-msgs/s")
	b.ReportMetric(float64(st.BytesOut.Load()-bytes0)/elapsed, "nats-bytes/s")
}
