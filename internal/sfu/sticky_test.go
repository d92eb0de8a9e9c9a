package sfu

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// layerSink records the simulcast layer (the test publisher's payload[6])
// of each packet it gets.
type layerSink struct {
	mu     sync.Mutex
	layers []byte
}

func (l *layerSink) WriteRTP(_ *rtp.Header, payload []byte) (int, error) {
	if len(payload) > 6 {
		l.mu.Lock()
		l.layers = append(l.layers, payload[6])
		l.mu.Unlock()
	}
	return len(payload), nil
}

func (l *layerSink) snapshot() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.layers...)
}

// TestStickySink: a sticky sink (a muxer's or recorder's) stays on the
// layer it got first when a higher one starts, where a WebRTC viewer moves
// up; it moves only once its layer has paused for longer than stickyIdle.
func TestStickySink(t *testing.T) {
	s := newTestSFU(t)
	pub := newTestPublisher(t, s, "sticky", pubOpts{rids: []string{"q", "h", "f"}})
	pub.mu.Lock()
	pub.skip = 3 // "f" starts later, as a browser's top layer does
	pub.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.run(ctx, 15)
	room, _ := s.LookupRoom(Streams, "sticky")
	waitCond(t, 5*time.Second, "two layers published", func() bool {
		ts := room.Tracks()
		return len(ts) == 1 && len(ts[0].Layers) >= 2
	})
	sink := &layerSink{}
	sub, err := room.Subscribe(room.Tracks()[0].ID, sink, SinkOptions{SSRC: 1, Sticky: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitCond(t, 5*time.Second, "the sticky sink on the middle layer", func() bool {
		l := sink.snapshot()
		return len(l) >= 30 && l[len(l)-1] == 1
	})

	pub.mu.Lock()
	pub.skip = 0 // the top layer starts
	pub.mu.Unlock()
	viewer := joinWHEP(t, s, "sticky", QualityHigh)
	viewer.waitFor(10*time.Second, "the WebRTC viewer on the top layer", func() bool {
		v := viewer.pkts["video"]
		return len(v) > 0 && v[len(v)-1].Payload[6] == 2
	})
	mark := len(sink.snapshot())
	waitCond(t, 10*time.Second, "more packets for the sticky sink", func() bool { return len(sink.snapshot()) >= mark+90 })
	for i, l := range sink.snapshot()[mark:] {
		if l != 1 {
			t.Fatalf("the sticky sink moved to layer %d (packet %d after the top layer started)", l, mark+i)
		}
	}

	pub.mu.Lock()
	pub.skip = 2 // its layer stops for good
	pub.mu.Unlock()
	waitCond(t, 15*time.Second, "the sticky sink on another layer after its own stopped", func() bool {
		l := sink.snapshot()
		return l[len(l)-1] != 1
	})
}

// waitCond polls cond until it holds or the deadline passes.
func waitCond(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
