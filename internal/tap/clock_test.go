package tap

import (
	"testing"
	"time"
)

// TestClock: RTP timestamps become durations from the first frame's
// arrival, across the 32-bit wrap and past a day.
func TestClock(t *testing.T) {
	c := clock{rate: 48000}
	base := c.pts(0xfffffc00, time.Now())
	if got := c.pts(0xfffffc00+960, time.Time{}) - base; got != 20*time.Millisecond {
		t.Fatalf("960 ticks = %v, want 20ms", got)
	}
	v := clock{rate: 90000}
	base = v.pts(7, time.Now())
	ts := uint32(7)
	for range 30 * 3600 { // 30 hours in steps of a second
		ts += 90000
		v.pts(ts, time.Time{})
	}
	if got := v.pts(ts+3000, time.Time{}) - base; got != 30*time.Hour+time.Second/30 {
		t.Fatalf("after 30 h: %v", got)
	}
}
