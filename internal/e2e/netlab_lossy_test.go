package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/netlab"
)

// lossyGroup is a group call of Chromium members, each in its own
// namespace behind its own NAT router with an impaired link.
type lossyGroup struct {
	lab     *netlab.Lab
	env     *env
	names   []string
	clients []*netlab.Client
	members []*browser
	// stats reads what a member receives from each other, by name:
	// (*browser).mediaStats for Parley's page.
	stats func(*browser) map[string]mediaStat
}

// startLossyGroup joins the named members, each behind a link impaired by
// m, to a Parley sfu room and waits until each decodes video from every
// other.
func startLossyGroup(t *testing.T, m impairment, names ...string) *lossyGroup {
	t.Helper()
	lab := netlab.New(t)
	g := &lossyGroup{lab: lab, names: names, stats: (*browser).mediaStats}
	for range names {
		g.clients = append(g.clients, addImpairedClient(t, lab, netlab.PortRestricted, m))
	}
	g.env = newLabEnv(t, lab, func(c *config.Config) {
		c.Rooms = map[string]config.RoomConfig{"lossy": {Mode: "sfu"}}
	})
	for i, n := range names {
		b := g.env.launchIn(g.clients[i], n)
		b.join("lossy")
		g.members = append(g.members, b)
	}
	for _, b := range g.members {
		b.waitDecodingFrom(60*time.Second, others(names, b.name)...)
	}
	return g
}

// sample reads every member's stats: by member, then by remote member.
func (g *lossyGroup) sample() map[string]map[string]mediaStat {
	out := map[string]map[string]mediaStat{}
	for _, b := range g.members {
		out[b.name] = g.stats(b)
	}
	return out
}

// TestNetlabLossyGroupCall: three Chromium members of a group call, each
// behind its own NAT with 5 % loss, 80 ± 30 ms delay and a 1.5 Mbit/s cap
// on its link, keep decoding every other member's video: over a 16 s window
// sampled every 2 s, no remote tile's decoded frame count stands still in
// two samples in a row (a stall of 4 s or more fails). A single frozen
// sample is logged, not failed: at 5 % loss on both links of a path the
// call still freezes for 10-20 % of its time in freezes of up to ~2 s
// (TestBenchLossyCall's figures; #14's goal of < 1 % is not met), and a
// CI run on a quiet machine saw one 2 s sample without a new frame from
// one publisher at both its viewers. What the test guarantees is that
// video keeps coming; how smoothly is the benchmark's to say.
func TestNetlabLossyGroupCall(t *testing.T) {
	g := startLossyGroup(t, fullImpairment(), "Ana", "Ben", "Cy")
	const samples = 8
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	prev := g.sample()
	first := prev
	var frozen, stalled []string
	still := map[[2]string]int{} // samples in a row without a new frame, by viewer and publisher
	for i := 1; i <= samples; i++ {
		<-tick.C // the sampling period, not a synchronization
		now := g.sample()
		for _, b := range g.members {
			for _, from := range others(g.names, b.name) {
				p, q := prev[b.name][from], now[b.name][from]
				k := [2]string{b.name, from}
				if q.FramesDecoded > p.FramesDecoded {
					still[k] = 0
					continue
				}
				still[k]++
				// What came meanwhile says where it stopped: no packets (the
				// SFU sent none), or packets and keyframe requests (the
				// decoder waited for a keyframe).
				frozen = append(frozen, fmt.Sprintf("sample %d: %s's video at %s (%v frames; %v packets, %v lost, %v PLIs, %v keyframes in the sample)",
					i, from, b.name, q.FramesDecoded, q.VideoPackets-p.VideoPackets, q.PacketsLost-p.PacketsLost, q.PLIs-p.PLIs, q.KeyFrames-p.KeyFrames))
				if still[k] == 2 {
					stalled = append(stalled, fmt.Sprintf("samples %d–%d: %s's video at %s (%v frames)", i-1, i, from, b.name, q.FramesDecoded))
				}
			}
		}
		prev = now
	}
	for _, b := range g.members {
		t.Logf("%s sends %s", b.name, b.sending())
		for _, from := range others(g.names, b.name) {
			p, q := first[b.name][from], prev[b.name][from]
			secs := (q.At - p.At) / 1000
			t.Logf("%s ← %s: %.1f frames/s, width %v, %v freezes (%.2f s), %v frames dropped, video loss %v of %v packets (NACKs %v), audio concealed %.2f %%",
				b.name, from, (q.FramesDecoded-p.FramesDecoded)/secs, q.Width, q.FreezeCount-p.FreezeCount, q.FreezeSeconds-p.FreezeSeconds,
				q.FramesDropped-p.FramesDropped, q.PacketsLost-p.PacketsLost, q.VideoPackets-p.VideoPackets, q.NacksSent-p.NacksSent,
				100*ratio(q.Concealed-p.Concealed, q.Samples-p.Samples))
		}
	}
	if len(frozen) > 0 {
		t.Logf("no new frame in %d of %d samples: %s", len(frozen), samples*len(g.members)*(len(g.names)-1), strings.Join(frozen, "; "))
	}
	if len(stalled) > 0 {
		t.Fatalf("video stalled for two samples (4 s) in a row: %s", strings.Join(stalled, "; "))
	}
}

// ratio is a/b, 0 for b = 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
