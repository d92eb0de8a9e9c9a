package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestBenchLossyCall measures a three-member group call in which every
// member's link is impaired (PARLEY_LOSSY picks how, see lossyBenchLink):
// video freezes (freezeCount, totalFreezesDuration, framesDropped per
// minute of call, from getStats), audio concealment (concealedSamples /
// totalSamplesReceived), and the time to smooth video again after a 3 s
// outage of one member's link. A benchmark, not a test: it only reports.
// Run with PARLEY_BENCH=1 (and PARLEY_LOSSY_SECONDS, default 60, for the
// length of the measured call):
//
//	PARLEY_BENCH=1 PARLEY_LOSSY=issue flock /tmp/parley-browser.lock go test ./internal/e2e -run 'TestBenchLossyCall$' -v -count=1 -timeout 10m
func TestBenchLossyCall(t *testing.T) {
	if os.Getenv("PARLEY_BENCH") == "" {
		t.Skip("set PARLEY_BENCH=1 to run the browser benchmark")
	}
	m, seconds := lossyBenchSettings(t)
	g := startLossyGroup(t, m, "Ana", "Ben", "Cy")
	before := g.env.srv.SFU().Stats()
	measureLossyCall(t, g, m, seconds)
	after := g.env.srv.SFU().Stats()
	t.Logf("SFU over the call and the outage: %d NACKed packets answered (%d on RTX), %d missed, %d keyframe requests to publishers, %d probe packets",
		after.NACKAnswered-before.NACKAnswered, after.NACKOnRTX-before.NACKOnRTX, after.NACKMissed-before.NACKMissed, after.PLIs-before.PLIs, after.Probes-before.Probes)
	for _, b := range g.members {
		t.Logf("%s sends %s", b.name, b.sending())
	}
}

// lossyBenchSettings reads the lossy benchmarks' settings: PARLEY_LOSSY,
// the link (issue, the default: 5 % loss and 80 ms delay each way, the
// condition of issue #14's performance goal; full: the lab's hard link,
// which adds ± 30 ms jitter and a 1.5 Mbit/s cap), and
// PARLEY_LOSSY_SECONDS, the measured call's length (default 60).
func lossyBenchSettings(t *testing.T) (impairment, int) {
	t.Helper()
	var m impairment
	switch v := os.Getenv("PARLEY_LOSSY"); v {
	case "", "issue":
		m = issueImpairment()
	case "full":
		m = fullImpairment()
	default:
		t.Fatalf("PARLEY_LOSSY=%q: want issue or full", v)
	}
	seconds := 60
	if v := os.Getenv("PARLEY_LOSSY_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 {
			t.Fatalf("PARLEY_LOSSY_SECONDS=%q: want a number of seconds ≥ 5", v)
		}
		seconds = n
	}
	return m, seconds
}

// measureLossyCall samples g's call for seconds and logs its freeze and
// concealment figures, then cuts the first member's link for 3 s and logs
// how long video takes to be smooth again.
func measureLossyCall(t *testing.T, g *lossyGroup, m impairment, seconds int) {
	t.Helper()
	// The call: a sample a second (to see the figures move), totals at the end.
	first := g.sample()
	tick := time.NewTicker(time.Second)
	for range seconds {
		<-tick.C
		g.sample()
	}
	tick.Stop()
	last := g.sample()
	var pairs, freezes, freezeSecs, dropped, concealed, samples, callSecs, lost, packets, nacks float64
	normal := map[string]float64{} // frames/s over the call, by "at←from"
	for _, b := range g.members {
		for _, from := range others(g.names, b.name) {
			p, q := first[b.name][from], last[b.name][from]
			secs := (q.At - p.At) / 1000
			normal[b.name+"←"+from] = (q.FramesDecoded - p.FramesDecoded) / secs
			t.Logf("%s ← %s over %.0f s: %.1f frames/s, width %v, %v freezes (%.2f s), %v frames dropped, video packets lost %v of %v (NACKs sent %v), audio concealed %.2f %%",
				b.name, from, secs, (q.FramesDecoded-p.FramesDecoded)/secs, q.Width, q.FreezeCount-p.FreezeCount, q.FreezeSeconds-p.FreezeSeconds,
				q.FramesDropped-p.FramesDropped, q.PacketsLost-p.PacketsLost, q.VideoPackets-p.VideoPackets, q.NacksSent-p.NacksSent,
				100*ratio(q.Concealed-p.Concealed, q.Samples-p.Samples))
			pairs++
			callSecs += secs
			freezes += q.FreezeCount - p.FreezeCount
			freezeSecs += q.FreezeSeconds - p.FreezeSeconds
			dropped += q.FramesDropped - p.FramesDropped
			concealed += q.Concealed - p.Concealed
			samples += q.Samples - p.Samples
			lost += q.PacketsLost - p.PacketsLost
			packets += q.VideoPackets - p.VideoPackets
			nacks += q.NacksSent - p.NacksSent
		}
	}
	minutes := callSecs / 60
	t.Logf("lossy call (%v), %d remote tiles, %.0f s each: %.2f freezes/min, freeze time %.2f %% of call time (goal < 1 %%), %.1f frames dropped/min, audio concealed %.2f %% (goal < 2 %%); video packets lost on arrival (packetsLost, before repair by RTX) %.2f %%, %.0f NACKs/min",
		m, int(pairs), callSecs/pairs, freezes/minutes, 100*freezeSecs/callSecs, dropped/minutes, 100*ratio(concealed, samples),
		100*ratio(lost, lost+packets), nacks/minutes)

	// The outage: the first member's link carries nothing for 3 s.
	// Recovery is the time from the link's return until her video at the
	// second member, and his at her, decode at the rate they had over the
	// call (at least 3/4 of it over a second).
	a, b := g.members[0], g.members[1]
	watch := [][2]*browser{{b, a}, {a, b}} // at, from
	g.clients[0].Cut()
	cutAt := time.Now()
	outage := time.NewTimer(3 * time.Second)
	<-outage.C // the outage's length, not a synchronization
	g.clients[0].Mend()
	mendAt := time.Now()
	t.Logf("link cut for %v", mendAt.Sub(cutAt).Round(time.Millisecond))
	type point struct {
		at     time.Time
		frames float64
	}
	// Both directions sampled together, every 100 ms, for up to 30 s.
	pts := map[string][]point{}
	recovered := map[string]time.Duration{}
	deadline := mendAt.Add(30 * time.Second)
	for len(recovered) < len(watch) && time.Now().Before(deadline) {
		for _, w := range watch {
			key := w[0].name + "←" + w[1].name
			if _, done := recovered[key]; done {
				continue
			}
			now := point{time.Now(), g.stats(w[0])[w[1].name].FramesDecoded}
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
		key := w[0].name + "←" + w[1].name
		r, ok := recovered[key]
		if !ok {
			t.Errorf("%s: video not back at %.1f frames/s within 30 s of the link's return", key, 0.75*normal[key])
			continue
		}
		t.Logf("recovery after a 3 s outage of %s's link, %s: smooth video (≥ 3/4 of the call's %.1f frames/s, over a second) from %v after the link came back (goal < 2 s)",
			a.name, key, normal[key], r.Round(10*time.Millisecond))
	}
}
