package tap

import (
	"testing"
	"time"
)

// TestClock: RTP timestamps become the time since the first frame,
// across the 32-bit wrap and past a day.
func TestClock(t *testing.T) {
	c := clock{rate: 48000}
	base := c.elapsed(0xfffffc00)
	if got := c.elapsed(0xfffffc00+960) - base; got != 20*time.Millisecond {
		t.Fatalf("960 ticks = %v, want 20ms", got)
	}
	v := clock{rate: 90000}
	base = v.elapsed(7)
	ts := uint32(7)
	for range 30 * 3600 { // 30 hours in steps of a second
		ts += 90000
		v.elapsed(ts)
	}
	if got := v.elapsed(ts+3000) - base; got != 30*time.Hour+time.Second/30 {
		t.Fatalf("after 30 h: %v", got)
	}
}

// TestSharedOffset: tracks on one clock line up by timestamp, whichever
// of them wrapped.
func TestSharedOffset(t *testing.T) {
	at := func(d time.Duration, rate int64) uint32 { return uint32(int64(d/time.Millisecond) * rate / 1000) }
	for _, c := range []struct {
		name       string
		video, aud time.Duration // the frames' pts on the source's clock
	}{
		{"start", 2 * time.Second, 2*time.Second + 300*time.Millisecond},
		{"audio first", 5 * time.Second, 4 * time.Second},
		{"video wrapped", 14 * time.Hour, 14*time.Hour + 40*time.Millisecond}, // 90 kHz wraps at 13.25 h
		{"both wrapped", 26 * time.Hour, 26*time.Hour - 200*time.Millisecond}, // 48 kHz at 24.9 h
	} {
		want := c.aud - c.video
		// est: where arrival puts it, seconds off
		got := sharedOffset(at(c.video, 90000), 90000, at(c.aud, 48000), 48000, want+2*time.Second)
		if (got - want).Abs() > time.Millisecond {
			t.Errorf("%s: offset %v, want %v", c.name, got, want)
		}
	}
}

// TestArrivalOffset: without a shared clock, a track's first frame is
// placed by its arrival against the video's earliest-arriving timeline,
// so a keyframe the SFU replayed from its cache (old when it arrives)
// does not push the audio late.
func TestArrivalOffset(t *testing.T) {
	start := time.Now()
	tp := &tap{video: 0, started: true, start: start, clocks: []clock{{rate: 90000}, {rate: 48000}}}
	emitAt := func(idx int, ts uint32, at time.Duration) time.Duration {
		pts, _ := tp.place(idx, ts, start.Add(at))
		return pts
	}
	// A keyframe captured 800 ms before it arrives (replayed), the rest of
	// its GOP in a burst, then live frames.
	emitAt(0, 0, 0)
	for i := 1; i <= 20; i++ {
		emitAt(0, uint32(i*3600), time.Duration(i)*time.Millisecond)
	}
	emitAt(0, 21*3600, 45*time.Millisecond) // live: 840 ms of media, 5 ms in transit
	// Audio captured 850 ms after the keyframe arrives 5 ms later: 55 ms
	// after the tap started.
	if got := emitAt(1, 12345, 55*time.Millisecond); (got - 850*time.Millisecond).Abs() > 10*time.Millisecond {
		t.Fatalf("audio placed at %v, want ~850ms", got)
	}
}
