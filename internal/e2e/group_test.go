package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/config"
)

// newGroupEnv serves sfu rooms on loopback.
func newGroupEnv(t *testing.T) *env {
	return newEnv(t, func(c *config.Config) {
		c.MediaUDP = "127.0.0.1:0"
		c.MediaTCP = "off"
	})
}

// prefs sets the call page's remembered settings (localStorage) before a join.
func (b *browser) prefs(kv map[string]string) {
	b.t.Helper()
	b.do(20*time.Second, chromedp.Navigate(b.env.url+"/healthz"))
	for k, v := range kv {
		eval[bool](b, fmt.Sprintf(`(localStorage.setItem(%s, %s), true)`, jsString("parley."+k), jsString(v)))
	}
}

// writeSpeechWAV writes a loud speech-like signal: voiced syllables (a
// gliding 110-220 Hz fundamental with harmonics) about four times a second
// with short pauses. A steady sine would not do: the microphone's noise
// suppression takes it for background noise and removes it.
func writeSpeechWAV(t *testing.T, path string, seconds, amp float64) {
	t.Helper()
	const rate = 48000
	n := int(seconds * rate)
	var buf bytes.Buffer
	w := func(v any) { _ = binary.Write(&buf, binary.LittleEndian, v) }
	buf.WriteString("RIFF")
	w(uint32(36 + 2*n))
	buf.WriteString("WAVEfmt ")
	w(uint32(16))
	w(uint16(1))
	w(uint16(1))
	w(uint32(rate))
	w(uint32(rate * 2))
	w(uint16(2))
	w(uint16(16))
	buf.WriteString("data")
	w(uint32(2 * n))
	phase := 0.0
	for i := range n {
		ts := float64(i) / rate
		syl := math.Mod(ts, 0.25) / 0.25 // position in a 250 ms syllable
		env := 0.0
		if syl < 0.8 {
			env = math.Sin(math.Pi * syl / 0.8)
		}
		f0 := 110 + 110*(0.5+0.5*math.Sin(2*math.Pi*0.7*ts))
		phase += 2 * math.Pi * f0 / rate
		v := 0.0
		for k := 1; k <= 8; k++ {
			v += math.Sin(float64(k)*phase) / float64(k)
		}
		w(int16(math.Round(amp * 32767 * env * v / 2.2)))
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// withAudioFile makes the fake microphone play a WAV file.
func withAudioFile(path string) func(*browserOpts) {
	return func(o *browserOpts) { o.flags["use-file-for-fake-audio-capture"] = path }
}

// pairsJS lists, per RTCPeerConnection the page uses, the selected
// candidate pair's ends.
const pairsJS = `(async () => {
  const pcs = new Set([...parleyApp.client.peers.values()].map(p => p.pc));
  const out = [];
  for (const pc of pcs) {
    const r = await pc.getStats(); const by = new Map(); r.forEach(s => by.set(s.id, s));
    r.forEach(s => {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
      const p = by.get(s.selectedCandidatePairId), l = by.get(p.localCandidateId), rc = by.get(p.remoteCandidateId);
      out.push({ local: l.address + ':' + l.port, remote: rc.address + ':' + rc.port, type: rc.candidateType });
    });
  }
  return out; })()`

type pair struct {
	Local  string `json:"local"`
	Remote string `json:"remote"`
	Type   string `json:"type"`
}

// videoFromJS is the inbound video of one member (by name) on this page:
// frames decoded and frame width, from getStats.
func videoFromJS(name string) string {
	return `(async () => {
  const p = [...parleyApp.client.peers.values()].find(p => p.name === ` + jsString(name) + `);
  if (!p) return { frames: 0, width: 0 };
  const ids = new Set(p.remoteStream.getVideoTracks().map(t => t.id));
  let frames = 0, width = 0;
  (await p.pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video' && ids.has(s.trackIdentifier)) { frames += s.framesDecoded || 0; width = Math.max(width, s.frameWidth || 0); } });
  return { frames, width }; })()`
}

type videoIn struct {
	Frames float64 `json:"frames"`
	Width  float64 `json:"width"`
}

// 1 + 3 + 6. Four browsers in a group room made from the home page's
// "Group" choice: each decodes three remote videos through the server (one
// connection per browser, all to the same server address); the member
// whose microphone plays a loud tone is highlighted (and featured in the
// speaker layout) on the others, the silent ones are not; a file sent to
// everyone arrives intact at all three others; connection quality shows.
func TestGroupCall(t *testing.T) {
	e := newGroupEnv(t)
	dir := t.TempDir()
	loud, quiet := filepath.Join(dir, "tone.wav"), filepath.Join(dir, "silence.wav")
	writeSpeechWAV(t, loud, 30, 0.7)
	writeToneWAV(t, quiet, 440, 30, 0)
	names := []string{"Ada", "Bo", "Cy", "Di"}
	var bs []*browser
	for i, n := range names {
		f := quiet
		if i == 0 {
			f = loud
		}
		b := e.launch(n, withSize(960, 600), withAudioFile(f))
		b.prefs(map[string]string{"res": "360", "fps": "15", "layout": "speaker"})
		bs = append(bs, b)
	}
	// Ada creates the room from the home page, as a group.
	a := bs[0]
	a.do(20*time.Second, chromedp.Navigate(e.url+"/"))
	a.waitFor(10*time.Second, "the home page", `document.querySelector('#create') && document.querySelector('#kind-sfu')`)
	a.do(30*time.Second, chromedp.SendKeys(chromedp.CSS("#name"), "Ada"))
	a.click("#kind-sfu")
	a.click("#create")
	a.waitFor(15*time.Second, "the lobby", `location.pathname.startsWith('/r/') && location.search.includes('mode=sfu') && document.querySelector('#join') && !document.querySelector('#join').disabled`, `location.href`)
	room := eval[string](a, `decodeURIComponent(location.pathname.slice(3))`)
	a.click("#join")
	a.waitFor(15*time.Second, "an sfu room", `parleyApp.client.state === 'joined' && parleyApp.client.mode === 'sfu' && document.querySelector('#room-mode').dataset.mode === 'sfu'`)
	for _, b := range bs[1:] {
		b.join(room) // the plain invite link: the room is already a group room
	}
	for i, b := range bs {
		b.waitFor(5*time.Second, "sfu mode", `parleyApp.client.mode === 'sfu'`)
		var others []string
		for j, n := range names {
			if j != i {
				others = append(others, n)
			}
		}
		b.waitMedia(40*time.Second, others...)
		b.waitFor(10*time.Second, "three remote tiles with video", `document.querySelectorAll('.tile.remote[data-has-video="true"]').length === 3`,
			`[...document.querySelectorAll('.tile')].map(t => t.dataset)`)
	}
	// No peer-to-peer connections: one PeerConnection per page, and every
	// page's selected pair ends at the same server address.
	server := ""
	for _, b := range bs {
		ps := eval[[]pair](b, pairsJS)
		if len(ps) != 1 {
			t.Fatalf("%s: %d peer connections with a selected pair, want 1: %+v", b.name, len(ps), ps)
		}
		if server == "" {
			server = ps[0].Remote
		}
		if ps[0].Remote != server {
			t.Fatalf("%s: connected to %s, others to %s: not all through the server", b.name, ps[0].Remote, server)
		}
		for _, o := range bs {
			if o != b && eval[[]pair](o, pairsJS)[0].Local == ps[0].Remote {
				t.Fatalf("%s is connected to %s directly", b.name, o.name)
			}
		}
	}
	t.Logf("all four pages connect only to the server at %s", server)

	// Active speaker: Ada's tone.
	for _, b := range bs[1:] {
		b.waitFor(15*time.Second, "Ada highlighted as the speaker", tileJS("Ada")+`.classList.contains('speaking') && `+tileJS("Ada")+`.classList.contains('featured')`,
			`[document.querySelector('#grid').dataset.speaker, [...document.querySelectorAll('.tile.remote')].map(t => t.dataset.name + ':' + t.className)]`)
		for _, n := range names[1:] {
			if n != b.name && eval[bool](b, tileJS(n)+`.classList.contains('speaking')`) {
				t.Errorf("%s: silent %s highlighted", b.name, n)
			}
		}
	}
	// Quality indicators settle on "good" on loopback.
	qd := bs[1].waitFor(30*time.Second, "connection quality on every remote tile", `[...document.querySelectorAll('.tile.remote .q-ind')].length === 3 && [...document.querySelectorAll('.tile.remote .q-ind')].every(q => q.dataset.q === 'good' || q.dataset.q === 'fair')`,
		`[...document.querySelectorAll('.tile.remote .q-ind')].map(q => q.dataset.q + ' ' + q.title)`)
	t.Logf("quality good or fair after %v: %s", qd.Round(time.Millisecond), jsonish(eval[any](bs[1], `[...document.querySelectorAll('.tile.remote .q-ind')].map(q => q.dataset.q + ' ' + q.title)`)))

	// 7. What a group call looks like: speaker layout, Ada featured.
	bs[1].do(30*time.Second, chromedp.EmulateViewport(1280, 800))
	bs[1].waitFor(5*time.Second, "the featured tile resized", tileJS("Ada")+`.clientWidth > 700`)
	bs[1].shot("group-call.png", 1280, 800)

	// Chat and a file to everyone, through the server's relay.
	c := bs[2]
	c.click("#btn-chat")
	c.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "hello group"), chromedp.Click(chromedp.CSS("#chat-send")))
	p, sum := writeRandomFile(t, "group.bin", 1<<20+333, 7)
	c.click("#btn-files")
	c.waitFor(5*time.Second, "three recipients", `document.querySelectorAll('#file-to option').length === 4`)
	c.do(30*time.Second, chromedp.SetUploadFiles(chromedp.CSS("#file-input"), []string{p}))
	for _, b := range bs {
		if b == c {
			continue
		}
		b.click("#btn-chat")
		b.waitFor(10*time.Second, "Cy's message", `[...document.querySelectorAll('#chat-list .msg')].some(m => m.querySelector('.msg-name').textContent === 'Cy' && m.querySelector('.msg-text').textContent === 'hello group')`)
		b.click("#btn-files")
		b.waitFor(60*time.Second, "the file received and verified", transferDone("in", "group.bin"), `document.querySelector('#transfers').innerText`)
		if got := eval[string](b, receivedSHA("group.bin")); got != sum {
			t.Errorf("%s: group.bin SHA-256 %s, want %s", b.name, got, sum)
		}
	}
	// Hang-up: Di leaves, the others drop the tile.
	bs[3].click("#btn-hangup")
	for _, b := range bs[:3] {
		b.waitFor(10*time.Second, "Di's tile removed", `!`+tileJS("Di"))
	}
}

// 2. Simulcast: a small tile gets the low layer (≤ 320 px wide), a large
// one a higher layer within 45 frames (3 s at 15 fps); a tile scrolled out
// of sight pauses.
func TestGroupSimulcast(t *testing.T) {
	e := newGroupEnv(t)
	pub := e.launch("Pub")
	pub.prefs(map[string]string{"res": "720", "fps": "15"})
	pub.join("sim", "mode=sfu")
	v := e.launch("Viewer")
	v.prefs(map[string]string{"res": "360", "fps": "15", "layout": "grid"})
	v.do(30*time.Second, chromedp.EmulateViewport(480, 360))
	v.join("sim", "mode=sfu")
	v.waitMedia(30*time.Second, "Pub")
	// Chromium sends the upper layers once its bandwidth estimate allows;
	// on a busy machine the full-size one can take long, so at least the
	// quarter- and half-size layers must run.
	layersJS := `(async () => { const o = {}; (await parleyApp.client.link.pc.getStats()).forEach(s => { if (s.type === 'outbound-rtp' && s.kind === 'video') o[s.rid] = [s.frameWidth || 0, s.framesPerSecond || 0, s.qualityLimitationReason]; }); return o; })()`
	sending := func(n int) string {
		return `(async () => Object.values(await ` + layersJS + `).filter(l => l[1] > 0).length >= ` + fmt.Sprint(n) + `)()`
	}
	pub.waitFor(30*time.Second, "Pub sending two or three layers", sending(2), layersJS)
	_, _ = pub.poll(5*time.Second, sending(3)) // for the log: the full-size layer may not run yet
	t.Logf("Pub sends (rid: width, fps, limitation): %s", jsonish(eval[any](pub, layersJS)))
	tile := tileJS("Pub")
	v.waitFor(10*time.Second, "a small tile asking for the low layer", tile+`.dataset.layer === 'low'`, tile+`.clientWidth`)
	v.waitFor(10*time.Second, "the low layer (≤ 320 px)", `(async () => { const x = await `+videoFromJS("Pub")+`; return x.width > 0 && x.width <= 320; })()`, videoFromJS("Pub"))
	small := eval[videoIn](v, videoFromJS("Pub"))
	t.Logf("small tile (%d px): receiving %v px wide", eval[int](v, tile+`.clientWidth`), small.Width)

	pub.waitFor(20*time.Second, "Pub sending the half-size layer", `(async () => { const l = (await `+layersJS+`).h; return l && l[1] > 0; })()`, layersJS)
	v.do(30*time.Second, chromedp.EmulateViewport(1600, 1000))
	start := time.Now()
	v.waitFor(10*time.Second, "the tile enlarged", tile+`.dataset.layer !== 'low'`, tile+`.clientWidth`)
	// How long the switch takes is counted in frames decoded since the page
	// asked for the higher layer: a loaded machine slows the clock of the
	// video too, a server that waits for a periodic keyframe still fails.
	asked := eval[videoIn](v, videoFromJS("Pub")).Frames
	d := v.waitFor(20*time.Second, "a higher layer", `(async () => { const x = await `+videoFromJS("Pub")+`; return x.width > 320; })()`, `(async () => [await `+videoFromJS("Pub")+`, parleyApp.client.link.tracks])()`)
	took := time.Since(start)
	big := eval[videoIn](v, videoFromJS("Pub"))
	frames := big.Frames - asked
	t.Logf("large tile (%d px, %s): receiving %v px wide after %v, %v frames after asking (poll %v)", eval[int](v, tile+`.clientWidth`), eval[string](v, tile+`.dataset.layer`), big.Width, took.Round(10*time.Millisecond), frames, d.Round(10*time.Millisecond))
	if frames > 45 {
		t.Errorf("switching up took %v frames, want ≤ 45 (3 s at 15 fps) (publisher: %s)", frames, jsonish(eval[any](pub, layersJS)))
	}

	// Out of sight: the subscription pauses (no more frames arrive).
	eval[bool](v, `(() => { const t = `+tile+`; t.style.setProperty('position', 'fixed'); t.style.setProperty('top', '-2000px'); return true })()`)
	v.waitFor(10*time.Second, "the hidden tile paused", tile+`.dataset.layer === 'paused'`)
	// The frames already on their way are decoded; then none while Pub
	// encodes 15 more (a second at 15 fps: Pub's own clock, not a sleep).
	pubFramesJS := `(async () => { let n = 0; (await parleyApp.client.link.pc.getStats()).forEach(s => { if (s.type === 'outbound-rtp' && s.kind === 'video') n = Math.max(n, s.framesEncoded || 0); }); return n; })()`
	framesWhilePubSends := func(n float64) float64 {
		f, p := eval[videoIn](v, videoFromJS("Pub")).Frames, eval[float64](pub, pubFramesJS)
		pub.waitFor(20*time.Second, fmt.Sprintf("Pub encoding %v more frames", n), `(async () => (await `+pubFramesJS+`) >= `+jsonish(p+n)+`)()`)
		return eval[videoIn](v, videoFromJS("Pub")).Frames - f
	}
	for deadline := time.Now().Add(15 * time.Second); framesWhilePubSends(15) > 1; {
		if time.Now().After(deadline) {
			t.Fatalf("the hidden tile kept decoding: %s", jsonish(eval[any](v, videoFromJS("Pub"))))
		}
	}
	if n := framesWhilePubSends(30); n > 3 {
		t.Errorf("a paused tile still decodes: %v frames while Pub encoded 30 (2 s)", n)
	}
	eval[bool](v, `(() => { const t = `+tile+`; t.style.removeProperty('position'); t.style.removeProperty('top'); return true })()`)
	f3 := eval[videoIn](v, videoFromJS("Pub")).Frames
	v.waitFor(5*time.Second, "video again when visible", `(async () => (await `+videoFromJS("Pub")+`).frames > `+fmt.Sprint(f3+5)+`)()`)
	if s := strings.TrimSpace(eval[string](v, tile+`.dataset.layer`)); s == "paused" {
		t.Errorf("layer still %q", s)
	}
}

// The call page's features in a group (sfu) room: mute state, screen share
// (no renegotiation), bitrate cap across the simulcast layers, stats, local
// recording, hang-up.
func TestGroupCallFeatures(t *testing.T) {
	e := newGroupEnv(t)
	a, b := e.launch("Alice"), e.launch("Bob")
	for _, x := range []*browser{a, b} {
		x.prefs(map[string]string{"res": "360", "fps": "15"})
	}
	dir := t.TempDir()
	if _, err := chromedp.CallBrowser(b.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
		t.Fatal(err)
	}
	a.join("features", "mode=sfu")
	b.join("features", "mode=sfu")
	b.waitMedia(30*time.Second, "Alice")
	a.waitMedia(10*time.Second, "Bob")

	a.click("#btn-mic")
	b.waitFor(5*time.Second, "Alice shown muted", tileJS("Alice")+`.dataset.audioMuted === 'true'`)
	a.click("#btn-mic")
	b.waitFor(5*time.Second, "Alice shown unmuted", tileJS("Alice")+`.dataset.audioMuted === 'false'`)

	// A member's own signal reaches Bob as the "signal" event; a
	// description from a member is not applied to his link to the server.
	eval[bool](b, `(window.appSignals = [], parleyApp.client.addEventListener('signal', (e) => appSignals.push(e.detail.peer.name + ':' + e.detail.data.app)), true)`)
	eval[bool](a, `(() => { const c = parleyApp.client, bob = [...c.peers.values()].find(p => p.name === 'Bob').id;
	  c.send({type: 'signal', to: bob, data: {description: {type: 'offer', sdp: 'v=0'}}}); c.send({type: 'signal', to: bob, data: {app: 'hello'}}); return true })()`)
	b.waitFor(10*time.Second, "Alice's own signal", `appSignals.join() === 'Alice:hello'`, `appSignals`)
	if st := eval[string](b, `parleyApp.client.link.pc.signalingState`); st != "stable" {
		t.Fatalf("Bob's link is %q after a member sent him a description, want it untouched (stable)", st)
	}

	sdp := eval[string](a, `parleyApp.client.link.pc.localDescription.sdp`)
	a.click("#btn-share")
	a.click("#share-pip")
	a.waitFor(10*time.Second, "sharing", `document.querySelector('#btn-share').textContent.includes('Stop share') && document.querySelector('#btn-share').classList.contains('on')`, `document.body.innerText`)
	b.waitFor(5*time.Second, "Alice's tile marked as a screen", tileJS("Alice")+`.dataset.screen === 'true'`)
	b.waitMedia(15*time.Second, "Alice")
	if re, x, y := renegotiated(sdp, eval[string](a, `parleyApp.client.link.pc.localDescription.sdp`)); re {
		t.Errorf("screen sharing renegotiated: %q became %q", x, y)
	}
	a.click("#btn-share")
	a.click("#share-stop")
	b.waitFor(5*time.Second, "the screen flag cleared", tileJS("Alice")+`.dataset.screen === 'false'`)

	a.click("#btn-settings")
	a.waitFor(5*time.Second, "the bitrate selector", `document.querySelector('#bitrate-select')`)
	a.selectOption("#bitrate-select", "300")
	a.waitFor(5*time.Second, "the cap shared across layers", `(() => { const e = parleyApp.client.link.pc.getSenders().find(s => s.track && s.track.kind === 'video').getParameters().encodings;
	  return e.length === 3 && e.filter(x => x.active).reduce((s, x) => s + x.maxBitrate, 0) <= 300000 && !e[2].active; })()`,
		`parleyApp.client.link.pc.getSenders().map(s => s.getParameters().encodings)`)
	b.waitMedia(10*time.Second, "Alice") // still flowing
	// Alice's readout after the cap: what goes out now (the layers still
	// on), and loss from the counters' changes, never negative.
	a.click("#btn-stats")
	const bobStatsJS = `(() => { const c = [...document.querySelectorAll('.stat-card')].find(c => c.querySelector('.who').textContent === 'Bob'); if (!c) return null;
	  const v = (k) => c.querySelector('dd[data-key="' + k + '"]').textContent; return { out: v('video-out'), loss: v('loss'), n: +c.querySelector('canvas.bitrate').dataset.points } })()`
	a.waitFor(10*time.Second, "Alice's stats card for Bob", bobStatsJS, `document.querySelector('#panel').innerText`)
	n0 := eval[map[string]any](a, bobStatsJS)["n"].(float64)
	a.waitFor(15*time.Second, "three more samples with video going out", `(() => { const s = `+bobStatsJS+`; return s.n >= `+jsonish(n0+3)+` && parseFloat(s.out) > 0 })()`, bobStatsJS)
	if st := eval[map[string]any](a, bobStatsJS); !(parseKbps(st["out"]) > 0) || strings.HasPrefix(st["loss"].(string), "-") {
		t.Errorf("Alice's readout after the cap: video out %q, loss %q", st["out"], st["loss"])
	}

	b.click("#btn-stats")
	b.waitFor(10*time.Second, "a stats card for Alice", `[...document.querySelectorAll('.stat-card')].some(c => c.textContent.includes('Alice'))`, `document.querySelector('#panel').innerText`)
	b.click("#btn-record")
	b.recordChunks(3)
	b.click("#btn-record")
	if webm := waitDownload(t, dir, ".webm"); !bytes.HasPrefix(webm, []byte{0x1a, 0x45, 0xdf, 0xa3}) || len(webm) < 20000 {
		t.Fatalf("the recording is not a plausible WebM (%d bytes)", len(webm))
	}
	a.click("#btn-hangup")
	b.waitFor(10*time.Second, "Alice's tile removed", `!`+tileJS("Alice"))
}

// parseKbps reads the number of a "123 kbps · …" readout (NaN-safe: -1).
func parseKbps(v any) float64 {
	s, _ := v.(string)
	var n float64
	if _, err := fmt.Sscanf(s, "%f kbps", &n); err != nil {
		return -1
	}
	return n
}
