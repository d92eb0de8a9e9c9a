package tap

import "time"

// clock unwraps one track's RTP timestamps into the time elapsed since
// its first frame (across the 32-bit wrap, exact past a day); offset
// places that first frame on the tap's clock.
type clock struct {
	rate    int64
	started bool
	last    uint32
	ext     int64 // unwrapped ticks since the first frame
	offset  time.Duration
}

func (c *clock) elapsed(ts uint32) time.Duration {
	if !c.started {
		c.started, c.last = true, ts
	}
	c.ext += int64(int32(ts - c.last))
	c.last = ts
	return ticksDuration(c.ext, c.rate)
}

// ticksDuration is n ticks of a clock of this rate, without overflow.
func ticksDuration(n, rate int64) time.Duration {
	return time.Duration(n/rate)*time.Second + time.Duration(n%rate*int64(time.Second)/rate)
}

// place puts a frame of track idx with timestamp ts, arriving now, on the
// tap's clock; false for audio from before the first picture. With t.mu
// held.
func (t *tap) place(idx int, ts uint32, now time.Time) (time.Duration, bool) {
	c := &t.clocks[idx]
	first := !c.started
	pts := c.elapsed(ts)
	if first {
		c.offset = t.firstOffset(idx, ts, now)
	}
	pts += c.offset
	if idx == t.video {
		if b := now.Sub(t.start) - pts; !t.haveBase || b < t.videoBase {
			t.videoBase, t.haveBase = b, true
		}
	} else if t.video >= 0 && pts < 0 {
		return 0, false
	}
	return pts, true
}

// firstOffset places a track's first frame (timestamp ts, arriving now)
// on the tap's clock, whose zero is the video's first keyframe; with
// t.mu held.
func (t *tap) firstOffset(idx int, ts uint32, now time.Time) time.Duration {
	switch {
	case idx == t.video:
		t.refTS = ts
		return 0
	case t.video < 0:
		return now.Sub(t.start) // audio only: its first frame opened the tap
	case t.shared:
		return sharedOffset(t.refTS, t.clocks[t.video].rate, ts, t.clocks[idx].rate, now.Sub(t.start))
	default:
		return now.Sub(t.start) - t.videoBase
	}
}

// sharedOffset is how far after the video's first timestamp vts (clock
// vrate) a timestamp ts (clock rate) of the same origin lies. Both count
// modulo 2^32, wrapping every 13 to 25 hours: of the candidates the one
// nearest est, where arrival places it, is taken.
func sharedOffset(vts uint32, vrate int64, ts uint32, rate int64, est time.Duration) time.Duration {
	d := ticksDuration(int64(ts), rate) - ticksDuration(int64(vts), vrate)
	pa, pv := ticksDuration(1<<32, rate), ticksDuration(1<<32, vrate)
	best := d
	for ka := time.Duration(-2); ka <= 2; ka++ {
		for kv := time.Duration(-2); kv <= 2; kv++ {
			if c := d + ka*pa - kv*pv; (c - est).Abs() < (best - est).Abs() {
				best = c
			}
		}
	}
	return best
}
