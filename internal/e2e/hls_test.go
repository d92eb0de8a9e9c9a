package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// hlsFramesJS is how many video frames the watch page's <video> has
// presented (any path: WebRTC or HLS), and where its playback is.
const hlsFramesJS = `(() => { const v = document.querySelector('#video'); const q = v.getVideoPlaybackQuality();
  return { frames: q.totalVideoFrames - q.droppedVideoFrames, time: v.currentTime, path: document.querySelector('#path-name').textContent, hls: !!parleyApp.hls,
    state: document.body.dataset.state, badge: document.querySelector('#path-name').textContent + ' ' + document.querySelector('#path-latency').textContent } })()`

// hlsToneJS is toneJS on what the <video> element plays (its
// captureStream), for HLS, where the page has no MediaStream of its own.
var hlsToneJS = strings.Replace(toneJS, `const ms = document.querySelector('#video').srcObject, tr = ms && ms.getAudioTracks()[0];`,
	`const tr = (window.__cap = window.__cap || document.querySelector('#video').captureStream()).getAudioTracks()[0];`, 1)

// lagJS is what the watch page knows of its delay, in ms: over HLS,
// hls.js's distance to the live edge and the wall clock minus the
// EXT-X-PROGRAM-DATE-TIME of the frame on screen (the server stamps it when
// the frame arrives: the delay the server and the player add, as a person
// would see it next to the source); over WebRTC the badge's estimate (half
// the round trip plus the jitter buffer).
const lagJS = `(() => { const p = parleyApp.hls;
  if (p && p.hls) return { edge: p.hls.latency * 1000, pdt: p.hls.playingDate ? Date.now() - p.hls.playingDate.getTime() : -1, target: (p.hls.targetLatency || 0) * 1000 };
  const m = /^~([\d.]+) (ms|s)$/.exec(document.querySelector('#path-latency').textContent);
  return { webrtc: m ? parseFloat(m[1]) * (m[2] === 's' ? 1000 : 1) : 0 } })()`

type lag struct {
	Edge   float64 `json:"edge"`
	PDT    float64 `json:"pdt"`
	Target float64 `json:"target"`
	WebRTC float64 `json:"webrtc"`
}

// tab opens another tab of b's browser: two pages, one Chromium.
func (b *browser) tab(name string) *browser {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	nb := &browser{t: b.t, name: name, ctx: ctx, env: b.env}
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("%s: opening a tab: %v", name, err)
	}
	return nb
}

// openWatch loads /w/<stream>?<query> in a browser.
func (b *browser) openWatch(stream, query string) {
	b.t.Helper()
	b.do(30*time.Second, chromedp.Navigate(b.env.url+"/w/"+stream+"?name="+b.name+"&"+query))
	b.waitFor(15*time.Second, "the viewer page", `window.parleyApp && document.body.dataset.state`, `document.body.innerText`)
}

// waitHLSPlaying waits until the page plays over HLS: frames presented and
// the playback position moving, the badge saying HLS.
func (b *browser) waitHLSPlaying(timeout time.Duration) {
	b.t.Helper()
	b.waitFor(timeout, "the stream playing over HLS", `(() => { const s = `+hlsFramesJS+`; return s.path === 'HLS' && s.hls && s.state === 'live' && s.frames > 10 && /^HLS/.test(s.badge) })()`,
		`(async () => [`+hlsFramesJS+`, [...document.querySelectorAll('#overlay, #path, #source-note')].map(e => e.innerText),
		  await fetch('/api/streams/' + location.pathname.split('/').pop()).then(r => r.json()).then(j => j, e => String(e))])()`)
	// Then it keeps playing: 25 more frames and half a second more. hls.js
	// may recover from a media error meanwhile (a new MediaSource resets
	// the element's frame count and moves its position to the live edge):
	// the count starts again from there.
	b.waitFor(10*time.Second, "more frames and a later position", `(() => { const s = `+hlsFramesJS+`;
	  const b = window.__hlsBase;
	  if (!b || s.frames < b.frames || s.time < b.time) { window.__hlsBase = { frames: s.frames, time: s.time }; return false }
	  return s.frames > b.frames + 25 && s.time > b.time + 0.5 })()`, `[`+hlsFramesJS+`, window.__hlsBase]`)
}

// TestHLSWatch: ffmpeg publishes over RTMP (H.264 + AAC, 440 Hz); Chromium
// plays /w/s?hls through the vendored hls.js: frames decode, the tone is
// heard, the badge says HLS with its delay, axe finds nothing. A WebRTC
// viewer of the same stream in another tab of the same browser plays too,
// and how far HLS is behind it is printed.
func TestHLSWatch(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTMP = "127.0.0.1:0"
	})
	stop := keepPublishing(t, func(ctx context.Context) *exec.Cmd {
		return rtmptest.Studio(ctx, fmt.Sprintf("rtmp://%s/live/s", e.srv.RTMPAddr()))
	})
	defer stop()

	h := e.launch("Hana")
	h.openWatch("s", "hls")
	h.waitHLSPlaying(45 * time.Second)
	if k := eval[string](h, `parleyApp.hls.kind`); k != "hls.js" {
		t.Errorf("HLS played by %q, want the vendored hls.js", k)
	}
	h.waitFor(15*time.Second, "the 440 Hz tone over HLS", hlsToneJS, `window.__toneSeen`)
	h.waitFor(10*time.Second, "the HLS badge with its delay", `/^HLS ~[\d.]+ (ms|s)$/.test(`+hlsFramesJS+`.badge)`, `document.querySelector('#path').outerHTML`)
	if a := a11yViolations(h); a != "" {
		t.Errorf("watch page playing HLS: WCAG 2.1 AA violations:\n%s", a)
	}

	w := h.tab("Wes")
	w.openWatch("s", "")
	w.waitDecoding(30 * time.Second)
	if p := eval[string](w, `document.querySelector('#path-name').textContent`); p != "WebRTC" {
		t.Errorf("the viewer without ?hls plays %s", p)
	}
	// Both settled; then what each page knows of its delay.
	h.waitHLSPlaying(10 * time.Second)
	hl, wl := eval[lag](h, lagJS), eval[lag](w, lagJS)
	t.Logf("HLS (hls.js, LL-HLS): %.0f ms behind the live edge (target %.0f ms), frame on screen %.0f ms after the server stamped it (EXT-X-PROGRAM-DATE-TIME); WebRTC viewer: ~%.0f ms (half RTT + jitter buffer); HLS behind WebRTC: ~%.0f ms",
		hl.Edge, hl.Target, hl.PDT, wl.WebRTC, hl.PDT-wl.WebRTC)
}

// TestHLSViewerCap: with max_webrtc_viewers: 1 for the stream, the first
// watch page plays over WebRTC and the second, refused by WHEP, plays over
// HLS, its badge saying so and a status message telling why.
func TestHLSViewerCap(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTMP = "127.0.0.1:0"
		c.Streams = map[string]config.Stream{"s": {MaxWebRTCViewers: 1}}
	})
	stop := keepPublishing(t, func(ctx context.Context) *exec.Cmd {
		return rtmptest.Studio(ctx, fmt.Sprintf("rtmp://%s/live/s", e.srv.RTMPAddr()))
	})
	defer stop()

	first := e.launch("Fay")
	first.openWatch("s", "")
	first.waitDecoding(30 * time.Second)
	first.waitFor(5*time.Second, "the WebRTC badge", `document.querySelector('#path').textContent.includes('WebRTC')`, `document.querySelector('#path').outerHTML`)

	second := first.tab("Sam")
	second.openWatch("s", "")
	second.waitHLSPlaying(45 * time.Second)
	second.waitFor(5*time.Second, "why it plays HLS, said", `/HLS.*WebRTC viewers/.test(document.querySelector('#path-status').textContent)`, `document.querySelector('#path-status').textContent`)
	if p := eval[string](first, `document.querySelector('#path-name').textContent`); p != "WebRTC" {
		t.Errorf("the first viewer now plays %s", p)
	}
}

// glassLag measures, on viewer pages of one browser publisher's test
// pattern (its clock in the picture), the glass-to-glass delay of the frames
// each page shows for d, and returns each page's median in ms.
func glassLag(t *testing.T, d time.Duration, pages ...*browser) []float64 {
	t.Helper()
	for _, p := range pages {
		eval[bool](p, glassJS+` && !(window.__glassT = 0)`)
	}
	start := time.Now()
	for _, p := range pages {
		// Wait for enough readable frames, and at least d of them.
		p.waitFor(d+30*time.Second, "readable test-pattern frames", `glass.samples.length > 50`, `[glass.samples.length, glass.bad]`)
	}
	if rest := d - time.Since(start); rest > 0 {
		pages[0].waitFor(rest+10*time.Second, "the measuring time", `(window.__glassT = window.__glassT || Date.now()) && Date.now() - __glassT >= `+jsonish(rest.Milliseconds()))
	}
	out := make([]float64, len(pages))
	for i, p := range pages {
		r := eval[[]float64](p, `glass.samples`)
		s := slices.Clone(r)
		slices.Sort(s)
		out[i] = s[len(s)/2]
		t.Logf("%s (%s): glass-to-glass over %d frames: median %.0f ms, p90 %.0f ms, min %.0f, max %.0f", p.name, eval[string](p, `document.querySelector('#path-name').textContent`),
			len(s), s[len(s)/2], s[len(s)*9/10], s[0], s[len(s)-1])
	}
	return out
}

// playlistJS is the head of the stream's first media playlist (the server
// control, the part target, the first part lines), as hls.js loaded it.
const playlistJS = `(async () => { const p = parleyApp.hls.hls; const u = p.levels[p.currentLevel >= 0 ? p.currentLevel : 0].url[0];
  const t = await fetch(u).then(r => r.text()); return t.split('\n').filter(l => !/^#EXT-X-(PART|PRELOAD-HINT):/.test(l) || /PART-INF/.test(l)).slice(0, 12).join('\n') })()`

// TestHLSBehindWebRTC: the publisher page sends its test pattern (the
// sender's clock in the picture; Chrome sends keyframes only when asked, and
// the server's tap asks for one a second so that HLS has segments); one watch page plays it over WebRTC, one
// over HLS (hls.js), and each reads the clock off the frames it shows: how
// far HLS is behind WebRTC, as a person watching both would see it.
func TestHLSBehindWebRTC(t *testing.T) {
	e := newBroadcastEnv(t)
	pub := e.openPublisher("Host", "glass", "source=test&autostart=1&res=360")
	pub.waitFor(15*time.Second, "live", `document.body.dataset.state === 'live'`)
	t.Logf("publisher: %s", jsonish(eval[any](pub, `(async () => { const r = await parleyApp.session.pc.getStats(); const o = []; r.forEach(s => { if (s.type === 'outbound-rtp') o.push([s.kind, s.rid, s.codecId && r.get(s.codecId) && r.get(s.codecId).mimeType, s.framesEncoded, s.keyFramesEncoded]); }); return o })()`)))
	w := e.launch("Wes")
	w.openWatch("glass", "")
	w.waitDecoding(30 * time.Second)
	h := w.tab("Hana")
	h.openWatch("glass", "hls")
	h.waitHLSPlaying(45 * time.Second)
	if v := eval[string](h, `document.visibilityState`); v != "visible" {
		t.Fatalf("the second tab is %s: its frames would not be presented", v)
	}
	t.Logf("before measuring: HLS picture %s, WebRTC picture %s", eval[string](h, sizeJS), eval[string](w, sizeJS))
	m := glassLag(t, 5*time.Second, w, h)
	t.Logf("HLS (LL-HLS in hls.js) is %.0f ms behind WebRTC (medians %.0f vs %.0f ms); hls.js: %s", m[1]-m[0], m[1], m[0], jsonish(eval[lag](h, lagJS)))
	t.Logf("the video playlist's head:\n%s", eval[string](h, playlistJS))
	t.Logf("HLS picture %s, playing at %sx, buffered ahead %s s; WebRTC picture %s", eval[string](h, sizeJS), jsonish(eval[float64](h, `document.querySelector('#video').playbackRate`)),
		jsonish(eval[float64](h, `(() => { const v = document.querySelector('#video'), b = v.buffered; return b.length ? b.end(b.length - 1) - v.currentTime : 0 })()`)), eval[string](w, sizeJS))
}

const sizeJS = `document.querySelector('#video').videoWidth + 'x' + document.querySelector('#video').videoHeight`

// TestBenchHLSGlassToGlass measures LL-HLS glass-to-glass in hls.js: the
// publisher page's test pattern (its clock in the picture; the server's tap
// asks it for a keyframe a second) read off the frames a watch page shows over HLS, 20 s each on 3
// fresh page loads (where hls.js starts decides much of its delay), with a
// WebRTC watch page alongside for comparison. Run with PARLEY_BENCH=1:
//
//	PARLEY_BENCH=1 go test ./internal/e2e -run TestBenchHLSGlassToGlass -v -count=1
func TestBenchHLSGlassToGlass(t *testing.T) {
	if os.Getenv("PARLEY_BENCH") == "" {
		t.Skip("set PARLEY_BENCH=1 to run the browser benchmark")
	}
	e := newBroadcastEnv(t)
	pub := e.openPublisher("Host", "glass", "source=test&autostart=1&res=360")
	pub.waitFor(15*time.Second, "live", `document.body.dataset.state === 'live'`)
	w := e.launch("Wes")
	w.openWatch("glass", "")
	w.waitDecoding(30 * time.Second)
	h := w.tab("Hana")
	var hlsMs, rtcMs []float64
	for i := range 3 {
		h.openWatch("glass", "hls")
		h.waitHLSPlaying(45 * time.Second)
		m := glassLag(t, 20*time.Second, w, h)
		rtcMs, hlsMs = append(rtcMs, m[0]), append(hlsMs, m[1])
		t.Logf("load %d: hls.js %s", i+1, jsonish(eval[lag](h, lagJS)))
	}
	t.Logf("the video playlist's head:\n%s", eval[string](h, playlistJS))
	slices.Sort(hlsMs)
	slices.Sort(rtcMs)
	t.Logf("LL-HLS in hls.js glass-to-glass, median of each load: %v ms, median %.0f ms; WebRTC alongside: %v ms", hlsMs, hlsMs[1], rtcMs)
}

// TestHLSWhenWebRTCFails: a browser whose WHEP requests do not get
// through (blocked in the browser, as by a proxy or a filter that lets
// plain HTTP through) cannot play over WebRTC; the watch page plays the
// stream over HLS instead and says why.
func TestHLSWhenWebRTCFails(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTMP = "127.0.0.1:0"
	})
	stop := keepPublishing(t, func(ctx context.Context) *exec.Cmd {
		return rtmptest.Studio(ctx, fmt.Sprintf("rtmp://%s/live/s", e.srv.RTMPAddr()))
	})
	defer stop()
	b := e.launch("Una")
	if _, err := chromedp.Call(b.ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(b.ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{
		URLPatterns: []*network.BlockPattern{{URLPattern: "*://*:*/whep/*", Block: true}}}); err != nil {
		t.Fatal(err)
	}
	b.openWatch("s", "")
	b.waitHLSPlaying(60 * time.Second)
	b.waitFor(5*time.Second, "why it plays HLS, said", `/HLS.*WebRTC could not connect/.test(document.querySelector('#path-status').textContent)`, `document.querySelector('#path-status').textContent`)
	t.Logf("said: %q", eval[string](b, `document.querySelector('#path-status').textContent`))
}
