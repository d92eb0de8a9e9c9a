package sfu

import (
	"slices"
	"testing"
	"time"
)

// TestNACKTracker: a gap is asked for at once, again only after
// nackRetry, never once the packet came (repaired on RTX or late), and
// at most nackTries times; a jump starts afresh.
func TestNACKTracker(t *testing.T) {
	var tr nackTracker
	ms := func(n int) int64 { return int64(time.Duration(n) * time.Millisecond) }
	if got := tr.receive(100, 0); got != nil {
		t.Fatalf("first packet: asked for %v", got)
	}
	if got := tr.receive(103, ms(10)); !slices.Equal(got, []uint16{101, 102}) {
		t.Fatalf("after a gap: asked for %v, want [101 102]", got)
	}
	if got := tr.receive(104, ms(50)); got != nil {
		t.Fatalf("50 ms later: asked again for %v", got)
	}
	if got := tr.receive(101, ms(60)); got != nil {
		t.Fatalf("101 repaired: asked for %v", got)
	}
	if got := tr.receive(105, ms(111)); !slices.Equal(got, []uint16{102}) {
		t.Fatalf("after nackRetry: asked for %v, want [102] (101 came)", got)
	}
	for i := 2; i < nackTries; i++ {
		if got := tr.receive(uint16(104+i), ms(111+100*(i-1))); !slices.Equal(got, []uint16{102}) {
			t.Fatalf("try %d: asked for %v, want [102]", i+1, got)
		}
	}
	if got := tr.receive(200, ms(2000)); !slices.Equal(got, seqRange(114, 200)) {
		t.Fatalf("after %d tries of 102: asked for %v, want 114–199 only", nackTries, got)
	}
	if tr.receive(102, ms(2001)) != nil || tr.missing != 199-114+1 {
		t.Fatalf("102 arrived after it was given up: %d missing", tr.missing)
	}
	// A jump of the window or more (a publisher's restart) is no loss.
	if got := tr.receive(200+nackWindow, ms(2100)); got != nil || tr.missing != 0 {
		t.Fatalf("a jump: asked for %v, %d missing", got, tr.missing)
	}
	// Across the sequence number's wrap.
	tr = nackTracker{}
	tr.receive(65534, 0)
	if got := tr.receive(2, ms(1)); !slices.Equal(got, []uint16{65535, 0, 1}) {
		t.Fatalf("across the wrap: asked for %v", got)
	}
}

// TestNACKTrackerDoesNotAllocate: it runs on every video packet.
func TestNACKTrackerDoesNotAllocate(t *testing.T) {
	var tr nackTracker
	seq := uint16(0)
	now := int64(0)
	if n := testing.AllocsPerRun(1000, func() {
		seq += 1 + uint16(now/int64(time.Millisecond))%3 // a gap now and then
		now += int64(7 * time.Millisecond)
		tr.receive(seq, now)
	}); n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
}

func seqRange(from, to uint16) []uint16 {
	var out []uint16
	for s := from; s != to; s++ {
		out = append(out, s)
	}
	return out
}

// TestSFUAsksPublisherForMissingPackets: a packet the SFU never got from
// a publisher is NACKed to it (by the layer's tracker, pion's generator
// is gone).
func TestSFUAsksPublisherForMissingPackets(t *testing.T) {
	s := newTestSFU(t)
	pub := runPublisher(t, s, "nack", pubOpts{}, 1)
	sub := joinWHEP(t, s, "nack", QualityHigh)
	sub.waitFor(10*time.Second, "video", func() bool { return len(sub.pkts["video"]) > 0 })
	pub.mu.Lock()
	lost := pub.seq[0]
	pub.seq[0]++ // "lost" on the way
	pub.mu.Unlock()
	waitCond(t, 10*time.Second, "a NACK for the lost packet", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return slices.Contains(pub.nacked, lost)
	})
}

// BenchmarkNACKTracker is the tracker's cost per packet a layer's reader
// gets (nackgen.go, on the reader's path): no loss, and 5 % loss (every
// 20th sequence number missing, asked for again until given up).
func BenchmarkNACKTracker(b *testing.B) {
	for _, c := range []struct {
		name  string
		every uint16 // a gap after every n packets; 0: none
	}{{"clean", 0}, {"loss5pct", 20}} {
		b.Run(c.name, func(b *testing.B) {
			var tr nackTracker
			seq, now := uint16(0), int64(0)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				seq++
				if c.every > 0 && seq%c.every == 0 {
					seq++ // one lost
				}
				now += int64(time.Millisecond) // 1,000 packets/s
				tr.receive(seq, now)
			}
		})
	}
}
