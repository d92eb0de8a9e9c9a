package e2e

import (
	"testing"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/netlab"
)

// TestNetlabICERestart: a member's laptop moves to another network in a
// call (its address changes: every ICE pair it had is dead, its signaling
// connection too). Its page notices (ICE disconnected or failed), restarts
// ICE by itself — in a p2p room through perfect negotiation with the other
// member, in an sfu room by offering the server an ICE restart — and media
// flows both ways again, while the other member sees no leave or join.
func TestNetlabICERestart(t *testing.T) {
	for _, mode := range []string{"p2p", "sfu"} {
		t.Run(mode, func(t *testing.T) {
			lab := netlab.New(t)
			ca, cb := lab.AddClient(netlab.PortRestricted), lab.AddClient(netlab.PortRestricted)
			e := newLabEnv(t, lab, func(c *config.Config) {
				c.Rooms = map[string]config.RoomConfig{"move": {Mode: mode}}
			})
			a, b := e.launchIn(ca, "Ana"), e.launchIn(cb, "Ben")
			// ?debug: the pages log their signaling and ICE steps to the
			// console, which the test dumps when it fails.
			a.join("move", "debug")
			b.join("move", "debug")
			a.waitDecodingFrom(45*time.Second, "Ben")
			b.waitDecodingFrom(45*time.Second, "Ana")
			for _, x := range []struct {
				at   *browser
				from string
			}{{a, "Ben"}, {b, "Ana"}} {
				x.at.waitFor(30*time.Second, x.from+"'s video at 30 frames", `(async () => (await `+mediaStatsJS+`)[`+jsString(x.from)+`].framesDecoded >= 30)()`,
					`(async () => JSON.stringify((await `+mediaStatsJS+`)[`+jsString(x.from)+`]))()`)
			}
			before := a.mediaStats()["Ben"]
			id := eval[string](a, `parleyApp.client.id`)
			eval[bool](a, `(window.iceLog = [], (() => { const pc = [...parleyApp.client.peers.values()][0].pc;
			  pc.addEventListener('iceconnectionstatechange', () => iceLog.push(Math.round(performance.now()) + ' ' + pc.iceConnectionState)); })(), true)`)
			eval[bool](b, `(window.churn = [], ['peer-left', 'peer-joined'].forEach((k) => parleyApp.client.addEventListener(k, () => churn.push(k))), window.tileEl = `+tileJS("Ana")+`, true)`)
			const pcJS = `[...parleyApp.client.peers.values()][0].pc`
			const ufragJS = `(/a=ice-ufrag:(\S+)/.exec(` + pcJS + `.localDescription.sdp) || [])[1]`
			const restartsJS = `(() => { const p = [...parleyApp.client.peers.values()][0]; return (p.link || p).ice.restarts })()`
			ufrag := eval[string](a, ufragJS)
			old := ca.IP
			start := time.Now()
			ca.Renumber()
			t.Logf("Ana moved from %v to %v (pair was %s %s → %s %s)", old, ca.IP, before.LocalCand, before.LocalAddress, before.RemoteCand, before.RemoteAddress)
			// An ICE restart: new credentials, and connected again.
			restarted := `(` + ufragJS + ` !== ` + jsString(ufrag) + ` && ['connected', 'completed'].includes(` + pcJS + `.iceConnectionState))`
			a.waitFor(60*time.Second, "Ana's connection restarted and up", restarted,
				`(async () => JSON.stringify([window.iceLog, `+restartsJS+`, `+ufragJS+`, parleyApp.client.state, (await `+mediaStatsJS+`)['Ben']]))()`)
			t.Logf("Ana's connection up again %v after the move, after %v ICE restart(s); her ICE states (ms): %v", time.Since(start).Round(100*time.Millisecond),
				eval[int](a, restartsJS), eval[[]string](a, `window.iceLog`))
			// Media flows both ways again: frames decoded rise on each side.
			for _, x := range []struct {
				at   *browser
				from string
			}{{a, "Ben"}, {b, "Ana"}} {
				n := x.at.mediaStats()[x.from].FramesDecoded
				if _, err := x.at.poll(30*time.Second, `(async () => (await `+mediaStatsJS+`)[`+jsString(x.from)+`].framesDecoded > `+jsonish(n+5)+`)()`); err != nil {
					for _, y := range []*browser{a, b} {
						t.Logf("%s: sends %s; receives %s", y.name, y.sending(), jsonish(y.mediaStats()))
						t.Logf("%s: ICE %s: %s", y.name, eval[string](y, pcJS+`.iceConnectionState + ' ' + `+pcJS+`.signalingState`), eval[string](y, `(async () => { const r = await `+pcJS+`.getStats(); const o = []; const c = (id) => { const x = r.get(id); return x ? x.candidateType + ' ' + x.address + ':' + x.port : id; };
						  r.forEach(s => { if (s.type === 'candidate-pair') o.push('pair ' + c(s.localCandidateId) + ' → ' + c(s.remoteCandidateId) + ' ' + s.state + (s.nominated ? ' nominated' : '') + ' req ' + s.requestsSent + '/' + s.responsesReceived + ' in ' + s.requestsReceived); else if (s.type === 'outbound-rtp') o.push('out ' + s.kind + ' ' + s.packetsSent); }); return o.join('\n') })()`))
					}
					t.Fatalf("%s's video not decoding again at %s: %v", x.from, x.at.name, err)
				}
			}
			if got := eval[string](a, `parleyApp.client.id`); got != id {
				t.Fatalf("Ana is member %s after the move, want the same member %s", got, id)
			}
			if churn := eval[[]string](b, `window.churn`); len(churn) != 0 {
				t.Fatalf("Ben saw %v during Ana's move", churn)
			}
			if !eval[bool](b, `window.tileEl === `+tileJS("Ana")+` && window.tileEl.isConnected`) {
				t.Fatal("Ana's tile on Ben's page was replaced")
			}
		})
	}
}
