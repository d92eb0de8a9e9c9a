package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestBenchLossyCall measures a three-member group call in which every
// member's link has 5 % loss, 80 ± 30 ms delay and a 1.5 Mbit/s cap (see
// TestNetlabLossyGroupCall): video freezes (freezeCount,
// totalFreezesDuration, framesDropped per minute of call, from getStats),
// audio concealment (concealedSamples / totalSamplesReceived), and the time
// to smooth video again after a 3 s outage of one member's link. A
// benchmark, not a test: it only reports. Run with PARLEY_BENCH=1 (and
// PARLEY_LOSSY_SECONDS, default 60, for the length of the measured call):
//
//	PARLEY_BENCH=1 flock /tmp/parley-browser.lock go test ./internal/e2e -run TestBenchLossyCall -v -count=1 -timeout 10m
func TestBenchLossyCall(t *testing.T) {
	if os.Getenv("PARLEY_BENCH") == "" {
		t.Skip("set PARLEY_BENCH=1 to run the browser benchmark")
	}
	seconds := 60
	if v := os.Getenv("PARLEY_LOSSY_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 {
			t.Fatalf("PARLEY_LOSSY_SECONDS=%q: want a number of seconds ≥ 5", v)
		}
		seconds = n
	}
	g := startLossyGroup(t, "Ana", "Ben", "Cy")

	// The call: a sample a second (to see the figures move), totals at the end.
	first := g.sample()
	tick := time.NewTicker(time.Second)
	for range seconds {
		<-tick.C
		g.sample()
	}
	tick.Stop()
	last := g.sample()
	var pairs, freezes, freezeSecs, dropped, concealed, samples, callSecs float64
	normal := map[string]float64{} // frames/s over the call, by "at←from"
	for _, b := range g.members {
		for _, from := range others(g.names, b.name) {
			p, q := first[b.name][from], last[b.name][from]
			secs := (q.At - p.At) / 1000
			normal[b.name+"←"+from] = (q.FramesDecoded - p.FramesDecoded) / secs
			t.Logf("%s ← %s over %.0f s: %.1f frames/s, %v freezes (%.2f s), %v frames dropped, audio concealed %.2f %%",
				b.name, from, secs, (q.FramesDecoded-p.FramesDecoded)/secs, q.FreezeCount-p.FreezeCount, q.FreezeSeconds-p.FreezeSeconds,
				q.FramesDropped-p.FramesDropped, 100*ratio(q.Concealed-p.Concealed, q.Samples-p.Samples))
			pairs++
			callSecs += secs
			freezes += q.FreezeCount - p.FreezeCount
			freezeSecs += q.FreezeSeconds - p.FreezeSeconds
			dropped += q.FramesDropped - p.FramesDropped
			concealed += q.Concealed - p.Concealed
			samples += q.Samples - p.Samples
		}
	}
	minutes := callSecs / 60
	t.Logf("lossy call, %d remote tiles, %.0f s each: %.2f freezes/min, freeze time %.2f %% of call time (goal < 1 %%), %.1f frames dropped/min, audio concealed %.2f %% (goal < 2 %%)",
		int(pairs), callSecs/pairs, freezes/minutes, 100*freezeSecs/callSecs, dropped/minutes, 100*ratio(concealed, samples))

	// The outage: Ana's link carries nothing for 3 s. Recovery is the time
	// from the link's return until her video at Ben, and Ben's at her,
	// decode at the rate they had over the call (at least 3/4 of it over a
	// second).
	watch := [][2]string{{"Ben", "Ana"}, {"Ana", "Ben"}} // at, from
	ana := g.clients[0]
	ana.Cut()
	cutAt := time.Now()
	outage := time.NewTimer(3 * time.Second)
	<-outage.C // the outage's length, not a synchronization
	ana.Mend()
	mendAt := time.Now()
	t.Logf("link cut for %v", mendAt.Sub(cutAt).Round(time.Millisecond))
	type point struct {
		at     time.Time
		frames float64
	}
	byName := map[string]*browser{}
	for _, b := range g.members {
		byName[b.name] = b
	}
	// Both directions sampled together, every 100 ms, for up to 30 s.
	pts := map[string][]point{}
	recovered := map[string]time.Duration{}
	deadline := mendAt.Add(30 * time.Second)
	for len(recovered) < len(watch) && time.Now().Before(deadline) {
		for _, w := range watch {
			key := w[0] + "←" + w[1]
			if _, done := recovered[key]; done {
				continue
			}
			now := point{time.Now(), byName[w[0]].mediaStats()[w[1]].FramesDecoded}
			pts[key] = append(pts[key], now)
			// the last point a second or more before now starts the window
			for i := len(pts[key]) - 1; i >= 0; i-- {
				p := pts[key][i]
				if span := now.at.Sub(p.at); span >= time.Second {
					if (now.frames-p.frames)/span.Seconds() >= 0.75*normal[key] && p.at.After(mendAt) {
						recovered[key] = p.at.Sub(mendAt)
					}
					break
				}
			}
		}
		pause := time.NewTimer(100 * time.Millisecond)
		<-pause.C // the sampling period
	}
	for _, w := range watch {
		key := w[0] + "←" + w[1]
		r, ok := recovered[key]
		if !ok {
			t.Errorf("%s: video not back at %.1f frames/s within 30 s of the link's return", key, 0.75*normal[key])
			continue
		}
		t.Logf("recovery after a 3 s outage of Ana's link, %s: smooth video (≥ 3/4 of the call's %.1f frames/s, over a second) from %v after the link came back (goal < 2 s)",
			key, normal[key], r.Round(10*time.Millisecond))
	}
}
