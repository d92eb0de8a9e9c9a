package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/netlab"
)

// impairment is what the lab does to a client's link, each way, between
// the client and its NAT router.
type impairment struct {
	name          string
	loss          float64
	delay, jitter time.Duration
	kbit          int // rate cap; 0: none
}

func (m impairment) String() string {
	s := fmt.Sprintf("%s: %g %% loss, %v", m.name, 100*m.loss, m.delay)
	if m.jitter > 0 {
		s += fmt.Sprintf(" ± %v", m.jitter)
	}
	s += " delay"
	if m.kbit > 0 {
		s += fmt.Sprintf(", %d kbit/s cap", m.kbit)
	}
	return s + " each way"
}

// fullImpairment is the lab's hard link (issue #14's "lossy links"): 5 %
// loss, 80 ± 30 ms delay and a 1.5 Mbit/s cap.
func fullImpairment() impairment {
	return impairment{name: "full", loss: 0.05, delay: 80 * time.Millisecond, jitter: 30 * time.Millisecond, kbit: 1500}
}

// issueImpairment is the condition of issue #14's performance goal: 5 %
// loss and 80 ms delay, no jitter and no rate cap.
func issueImpairment() impairment {
	return impairment{name: "issue", loss: 0.05, delay: 80 * time.Millisecond}
}

// newLabEnv starts a Parley server on the lab's public segment (the host
// side, 10.213.P.1): clients in the lab's namespaces reach it through their
// NAT routers, and its ICE candidates, TURN URLs and relay addresses carry
// that address. SFU media listens on UDP and ICE-TCP there.
func newLabEnv(t *testing.T, lab *netlab.Lab, mutate func(*config.Config)) *env {
	t.Helper()
	host := lab.HostIP.String()
	return newEnv(t, func(c *config.Config) {
		c.HTTP, c.TURN, c.TURNTLS = host+":0", host+":0", "off"
		c.PublicIP = host
		c.MediaUDP, c.MediaTCP = host+":0", host+":0"
		c.TURNAllow = []string{"10.213.0.0/16"} // the lab's public segment
		if mutate != nil {
			mutate(c)
		}
	})
}

// launchIn starts a Chromium inside a lab client's namespace (through
// `ip netns exec`): every packet it sends goes through the client's NAT
// router and link. chromedp talks to it over the DevTools pipe (file
// descriptors 3 and 4), which crosses the namespace untouched. The page's
// origin is the lab address, not loopback, so the browser is told to treat
// it as secure (getUserMedia needs a secure context).
func (e *env) launchIn(c *netlab.Client, name string, opt ...func(*browserOpts)) *browser {
	e.t.Helper()
	// The allocator runs its ExecPath with the browser's flags: a wrapper
	// that enters the namespace first. `ip netns exec` execs the browser
	// in the same process, so chromedp's kill-on-exit and clean-up hold.
	wrapper := filepath.Join(e.t.TempDir(), "chromium-in-"+c.NS)
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", c.NS, e.chrome)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil { //nolint:gosec // an executable wrapper
		e.t.Fatal(err)
	}
	in := *e
	in.chrome = wrapper
	opts := append([]func(*browserOpts){withFlag("unsafely-treat-insecure-origin-as-secure", e.url)}, opt...)
	b := in.launch(name, opts...)
	b.env = e
	return b
}

// withFlag adds a Chromium command-line flag.
func withFlag(name string, value any) func(*browserOpts) {
	return func(o *browserOpts) { o.flags[name] = value }
}

// addLossyClient adds a client behind nat with the lab's full impairment.
func addLossyClient(t *testing.T, lab *netlab.Lab, nat netlab.NAT) *netlab.Client {
	t.Helper()
	return addImpairedClient(t, lab, nat, fullImpairment())
}

// addImpairedClient adds a client behind nat with link m, after measuring
// (and logging) that the delay applies: every round trip must take at
// least twice the delay less the jitter.
func addImpairedClient(t *testing.T, lab *netlab.Lab, nat netlab.NAT, m impairment) *netlab.Client {
	t.Helper()
	c := lab.AddClient(nat, netlab.Delay(m.delay, m.jitter))
	rtts := c.RoundTrips(11)
	t.Logf("%s (%v): UDP round trips through the link: min %v, median %v, max %v", c.NS, m,
		rtts[0].Round(time.Millisecond), rtts[len(rtts)/2].Round(time.Millisecond), rtts[len(rtts)-1].Round(time.Millisecond))
	if rtts[0] < 2*(m.delay-m.jitter) {
		t.Fatalf("round trips %v: the link does not delay as asked", rtts)
	}
	c.Loss(m.loss)
	if m.kbit > 0 {
		c.RateLimit(m.kbit)
	}
	return c
}

// mediaStat is what a browser receives from one remote member, from
// getStats of the connection that carries it (p2p: the member's own; sfu:
// the shared link, picked by the member's track ids).
type mediaStat struct {
	State          string  `json:"state"`
	FramesDecoded  float64 `json:"framesDecoded"`
	FramesDropped  float64 `json:"framesDropped"`
	FreezeCount    float64 `json:"freezeCount"`
	FreezeSeconds  float64 `json:"totalFreezesDuration"`
	Concealed      float64 `json:"concealedSamples"`
	Samples        float64 `json:"totalSamplesReceived"`
	Width          float64 `json:"frameWidth"`
	At             float64 `json:"at"` // the stats' timestamp (ms)
	LocalCand      string  `json:"localCandidate"`
	RemoteCand     string  `json:"remoteCandidate"`
	LocalProto     string  `json:"localProtocol"`    // udp or tcp
	RelayProto     string  `json:"relayProtocol"`    // how a local relay reaches TURN: udp, tcp, tls
	LocalAddress   string  `json:"localAddress"`     // the local candidate's address
	RemoteAddress  string  `json:"remoteAddress"`    // the remote candidate's address
	PacketsLost    float64 `json:"videoPacketsLost"` // video
	NacksSent      float64 `json:"nackCount"`        // video
	VideoPackets   float64 `json:"videoPacketsRecv"` // video
	PLIs           float64 `json:"pliCount"`         // video: keyframe requests sent
	KeyFrames      float64 `json:"keyFramesDecoded"` // video
	IceState       string  `json:"iceConnectionState"`
	SelectedPairID string  `json:"pair"`
}

const mediaStatsJS = `(async () => {
  ` + addInboundJS + `
  const out = {};
  const reports = new Map();
  for (const p of parleyApp.client.peers.values()) {
    if (!reports.has(p.pc)) reports.set(p.pc, await p.pc.getStats());
    const r = reports.get(p.pc);
    const ids = new Set(p.remoteStream.getTracks().map(t => t.id));
    const o = {state: p.connectionState, iceConnectionState: p.pc.iceConnectionState, framesDecoded: 0, framesDropped: 0, freezeCount: 0, totalFreezesDuration: 0,
      concealedSamples: 0, totalSamplesReceived: 0, frameWidth: 0, at: 0, localCandidate: '', remoteCandidate: '', localProtocol: '', relayProtocol: '',
      localAddress: '', remoteAddress: '', videoPacketsLost: 0, nackCount: 0, videoPacketsRecv: 0, pliCount: 0, keyFramesDecoded: 0, pair: ''};
    const byId = new Map(); r.forEach(s => byId.set(s.id, s));
    r.forEach(s => {
      if (s.type === 'inbound-rtp' && ids.has(s.trackIdentifier)) addInbound(o, s);
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        o.pair = s.selectedCandidatePairId;
        const pair = byId.get(s.selectedCandidatePairId);
        if (pair) {
          const l = byId.get(pair.localCandidateId) || {}, rc = byId.get(pair.remoteCandidateId) || {};
          o.localCandidate = l.candidateType || ''; o.remoteCandidate = rc.candidateType || '';
          o.localProtocol = l.protocol || ''; o.relayProtocol = l.relayProtocol || '';
          o.localAddress = l.address || ''; o.remoteAddress = rc.address || '';
        }
      }
    });
    out[p.name] = o;
  }
  return out;
})()`

// addInboundJS defines addInbound(o, s), which adds an inbound-rtp report
// s to o, a mediaStat's fields.
const addInboundJS = `const addInbound = (o, s) => {
    o.at = s.timestamp;
    if (s.kind === 'video') {
      o.framesDecoded += s.framesDecoded || 0; o.framesDropped += s.framesDropped || 0;
      o.freezeCount += s.freezeCount || 0; o.totalFreezesDuration += s.totalFreezesDuration || 0;
      o.frameWidth = s.frameWidth || 0; o.videoPacketsLost += s.packetsLost || 0; o.nackCount += s.nackCount || 0; o.videoPacketsRecv += s.packetsReceived || 0;
      o.pliCount += s.pliCount || 0; o.keyFramesDecoded += s.keyFramesDecoded || 0;
    } else {
      o.concealedSamples += s.concealedSamples || 0; o.totalSamplesReceived += s.totalSamplesReceived || 0;
    }
  };`

// mediaStats samples what b receives from each remote member, by name.
func (b *browser) mediaStats() map[string]mediaStat {
	b.t.Helper()
	return eval[map[string]mediaStat](b, mediaStatsJS)
}

// waitDecodingFrom waits until b has decoded video from each named member.
func (b *browser) waitDecodingFrom(timeout time.Duration, from ...string) {
	b.t.Helper()
	cond := make([]string, 0, len(from))
	for _, n := range from {
		cond = append(cond, fmt.Sprintf(`s[%s] && s[%s].framesDecoded > 0`, jsString(n), jsString(n)))
	}
	b.waitFor(timeout, fmt.Sprintf("video decoded from %v", from), `(async () => { const s = await `+mediaStatsJS+`; return `+strings.Join(cond, " && ")+` })()`,
		`(async () => JSON.stringify(await `+mediaStatsJS+`))()`)
}

// others lists names without skip.
func others(names []string, skip string) []string {
	var out []string
	for _, n := range names {
		if n != skip {
			out = append(out, n)
		}
	}
	return out
}

// sending is what a member's browser sends: per simulcast layer (rid),
// the encoder's frame rate, the target bitrate and why it is limited
// (bandwidth, cpu or none), the NACKs received and the retransmissions
// sent, and the available send bandwidth estimate.
func (b *browser) sending() string {
	b.t.Helper()
	return b.sendingOn(`[...parleyApp.client.peers.values()].map(p => p.pc)`)
}

// sendingOn is sending for the peer connections the JS expression pcs
// lists.
func (b *browser) sendingOn(pcs string) string {
	b.t.Helper()
	return eval[string](b, `(async () => {
  const pcs = new Set(`+pcs+`);
  const out = [];
  for (const pc of pcs) {
    const r = await pc.getStats();
    r.forEach(s => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') out.push((s.rid || 'video') + ': ' + (s.frameWidth || 0) + 'px ' + (s.framesPerSecond || 0) + ' fps, target ' +
        Math.round((s.targetBitrate || 0) / 1000) + ' kbit/s, limited by ' + s.qualityLimitationReason + (s.active === false ? ' (inactive)' : '') +
        ', ' + (s.nackCount || 0) + ' NACKs in, ' + (s.retransmittedPacketsSent || 0) + ' of ' + (s.packetsSent || 0) + ' packets retransmissions');
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) out.push('estimate ' + Math.round(s.availableOutgoingBitrate / 1000) + ' kbit/s');
    });
  }
  return out.join('; ');
})()`)
}
