package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
)

// chromiumPath finds the browser. Outside CI a missing browser skips the
// test; in CI (env CI set) it fails it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("browser test skipped in -short mode")
	}
	cands := []string{os.Getenv("PARLEY_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium not found (set PARLEY_CHROMIUM or install chromium); browser tests cannot be skipped in CI")
	}
	t.Skip("Chromium not found; install it (apt-get install chromium) or set PARLEY_CHROMIUM")
	return ""
}

// env is one Parley server for one test.
type env struct {
	t      *testing.T
	srv    *server.Server
	url    string
	chrome string
	cfg    config.Config
	log    *slog.Logger
}

// newEnv starts a Parley server on loopback with the embedded TURN.
func newEnv(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	chrome := chromiumPath(t)
	cfg := config.Default()
	cfg.HTTP = "127.0.0.1:0"
	cfg.TURN = "127.0.0.1:0"
	cfg.RTMP = "off"
	cfg.RTSP, cfg.SRT = "off", "off"
	cfg.TURNAllow = []string{"127.0.0.0/8"}
	cfg.PublicIP = "127.0.0.1"
	cfg.MediaUDP = "off"
	cfg.MediaTCP = "off"
	cfg.Ops = "127.0.0.1:0"
	cfg.LogLevel = "warn"
	if mutate != nil {
		mutate(&cfg)
	}
	var logOut io.Writer = io.Discard
	if os.Getenv("PARLEY_E2E_LOG") != "" {
		logOut = os.Stderr
	}
	e := &env{t: t, chrome: chrome, cfg: cfg, log: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	e.start()
	t.Cleanup(func() {
		if e.srv != nil {
			_ = e.srv.Close()
		}
	})
	e.url = e.srv.URL()
	return e
}

func (e *env) start() {
	e.t.Helper()
	srv, err := server.New(e.cfg, e.log)
	if err != nil {
		e.t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		e.t.Fatalf("server.Start: %v", err)
	}
	e.srv = srv
}

// stop shuts the server down; restart brings it back on the same address.
func (e *env) stop() {
	e.t.Helper()
	if err := e.srv.Close(); err != nil {
		e.t.Logf("closing server: %v", err)
	}
	e.srv = nil
}

func (e *env) restart() {
	e.t.Helper()
	e.cfg.HTTP = strings.TrimPrefix(e.url, "http://")
	e.start()
}

// browser is one headless Chromium with fake camera and microphone.
type browser struct {
	t    *testing.T
	name string
	ctx  context.Context
	env  *env
	base string // origin the pages are loaded from; the server's own by default

	mu      sync.Mutex
	console []string
}

type browserOpts struct {
	width, height int
	flags         map[string]any
}

// launch starts a browser. Each has its own profile directory.
func (e *env) launch(name string, opt ...func(*browserOpts)) *browser {
	t := e.t
	t.Helper()
	o := browserOpts{width: 1280, height: 800, flags: map[string]any{}}
	for _, f := range opt {
		f(&o)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(e.chrome),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(o.width, o.height),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("headless", "new"),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	for k, v := range o.flags {
		opts = append(opts, chromedp.Flag(k, v))
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, name: name, ctx: ctx, env: e}
	t.Cleanup(func() {
		// What would be console-only errors for a person are test failures.
		b.mu.Lock()
		for _, l := range b.console {
			if strings.Contains(l, "exception:") || strings.Contains(l, "Content Security Policy") {
				t.Errorf("%s: page error: %s", name, l)
			}
		}
		b.mu.Unlock()
		if t.Failed() {
			b.dumpConsole()
		}
		cancel()
		acancel()
	})
	// The first action starts the browser and must get the browser's own
	// context: cancelling it would close the browser.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: starting Chromium: %v", name, err)
	}
	if o.width < 500 {
		// Headless Chromium's window is at least 500 px wide whatever
		// --window-size says: a phone-sized page needs the viewport set.
		b.do(30*time.Second, chromedp.EmulateViewport(int64(o.width), int64(o.height)))
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, fmt.Sprintf("%s %s: %s", time.Now().Format("15:04:05.000"), m.Type, m.Text))
			b.mu.Unlock()
		}
	}()
	return b
}

func withSize(w, h int) func(*browserOpts) {
	return func(o *browserOpts) { o.width, o.height = w, h }
}

func (b *browser) dumpConsole() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.console) == 0 {
		return
	}
	b.t.Logf("--- console of %s ---\n%s", b.name, strings.Join(b.console, "\n"))
}

// do runs actions with a deadline, failing the test on error. The deadline
// only guards against a hung browser: DevTools commands such as a viewport
// change take seconds on a loaded machine, so callers give 20-30 s.
func (b *browser) do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		page, perr := tryEval[any](b, `({focus: document.activeElement && document.activeElement.outerHTML.slice(0, 120), panel: document.querySelector('#panel:not([hidden])') ? document.querySelector('#panel').dataset.panel : '', body: document.body.innerText.slice(0, 300)})`)
		b.t.Fatalf("%s: %v; page: %s %v", b.name, err, jsonish(page), perr)
	}
}

// eval evaluates JS (awaiting a promise) and decodes the result.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := tryEval[T](b, js)
	if err != nil {
		b.t.Fatalf("%s: eval %s: %v", b.name, short(js), err)
	}
	return v
}

func tryEval[T any](b *browser, js string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// waitFor polls a JS expression until it is truthy. what describes the
// condition in the failure message, which also shows the last value of
// the diagnostic expression diag (if any).
func (b *browser) waitFor(timeout time.Duration, what, js string, diag ...string) time.Duration {
	b.t.Helper()
	d, err := b.poll(timeout, js)
	if err != nil {
		msg := ""
		if len(diag) > 0 {
			v, derr := tryEval[any](b, diag[0])
			msg = fmt.Sprintf("; %v %v", jsonish(v), derr)
		}
		b.t.Fatalf("%s: timed out after %v waiting for %s: %v%s", b.name, timeout, what, err, msg)
	}
	return d
}

// poll evaluates js (a value or a promise) every 50 ms until it is truthy; it returns how long that took.
func (b *browser) poll(timeout time.Duration, js string) (time.Duration, error) {
	start := time.Now()
	var last error
	for time.Since(start) < timeout {
		ok, err := tryEval[bool](b, "(async () => !!(await ("+js+")))()")
		if err == nil && ok {
			return time.Since(start), nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if last == nil {
		last = fmt.Errorf("condition stayed false")
	}
	return 0, last
}

func jsonish(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// open loads the call page of a room as name, without pressing Join.
func (b *browser) open(room, query string) {
	b.t.Helper()
	base := b.base
	if base == "" {
		base = b.env.url
	}
	u := fmt.Sprintf("%s/r/%s?name=%s", base, room, b.name)
	if query != "" {
		u += "&" + query
	}
	b.do(30*time.Second, chromedp.Navigate(u))
	b.waitFor(15*time.Second, "the lobby with camera ready", lobbyReadyJS, `[document.body.innerText, document.querySelector('.lobby-tile') && document.querySelector('.lobby-tile').dataset.videoMuted,
		  document.querySelector('#preview') && document.querySelector('#preview').srcObject && document.querySelector('#preview').srcObject.getTracks().map(k => k.kind + ' ' + k.readyState)]`)
}

// lobbyReadyJS: the lobby's preview shows a live camera track and Join can
// be pressed.
const lobbyReadyJS = `(() => { const j = document.querySelector('#join'), t = document.querySelector('.lobby-tile'), v = document.querySelector('#preview');
  return !!j && !j.disabled && !!t && t.dataset.videoMuted === 'false' && !!v && !!v.srcObject && v.srcObject.getVideoTracks().some(k => k.readyState === 'live') })()`

// join opens the room and presses Join like a person would.
func (b *browser) join(room string, query ...string) {
	b.t.Helper()
	b.open(room, strings.Join(query, "&"))
	b.click("#join")
	b.waitFor(15*time.Second, "joined the room", `parleyApp.client && parleyApp.client.state === 'joined'`, `[document.body.innerText, parleyApp.client && parleyApp.client.state]`)
}

func (b *browser) click(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		// Say what is there instead: no such element, or what covers it.
		diag, derr := tryEval[any](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return 'no element; body: ' + document.body.innerText.slice(0, 300);
		  const r = e.getBoundingClientRect(), at = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
		  return {rect: [r.x, r.y, r.width, r.height], at: at && at.outerHTML.slice(0, 200)}; })()`, jsString(sel)))
		b.t.Fatalf("%s: clicking %s: %v; %s %v", b.name, sel, err, jsonish(diag), derr)
	}
}

// selectOption sets a <select> and fires "change", as choosing it does.
func (b *browser) selectOption(sel, value string) {
	b.t.Helper()
	eval[bool](b, fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q; s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === %q })()`, sel, value, value))
}

// inbound is what a browser receives from one remote member (by name).
type inbound struct {
	State         string  `json:"state"`
	FramesDecoded float64 `json:"framesDecoded"`
	AudioSamples  float64 `json:"audioSamples"`
	AudioBytes    float64 `json:"audioBytes"`
	VideoBytes    float64 `json:"videoBytes"`
	OutVideoBytes float64 `json:"outVideoBytes"`
	LocalCand     string  `json:"localCandidate"`
	RemoteCand    string  `json:"remoteCandidate"`
	SDP           string  `json:"sdp"`

	// OutVideoFrames are the frames encoded for the member, and
	// OutVideoAt the stats' time (ms): a rate needs no wall clock.
	OutVideoFrames float64 `json:"outVideoFrames"`
	OutVideoAt     float64 `json:"outVideoAt"`
}

const inboundJS = `(async () => {
  const out = {};
  for (const p of parleyApp.client.peers.values()) {
    const r = await p.pc.getStats();
    const o = {state: p.pc.connectionState, framesDecoded: 0, audioSamples: 0, audioBytes: 0, videoBytes: 0, outVideoBytes: 0, outVideoFrames: 0, outVideoAt: 0,
      localCandidate: '', remoteCandidate: '', sdp: p.pc.localDescription ? p.pc.localDescription.sdp : ''};
    const byId = new Map(); r.forEach(s => byId.set(s.id, s));
    r.forEach(s => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') { o.framesDecoded += s.framesDecoded || 0; o.videoBytes += s.bytesReceived || 0; }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') { o.audioSamples += s.totalSamplesReceived || 0; o.audioBytes += s.bytesReceived || 0; }
      if (s.type === 'outbound-rtp' && s.kind === 'video') { o.outVideoBytes += s.bytesSent || 0; o.outVideoFrames += s.framesEncoded || 0; o.outVideoAt = s.timestamp; }
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        if (pair) { o.localCandidate = (byId.get(pair.localCandidateId) || {}).candidateType || ''; o.remoteCandidate = (byId.get(pair.remoteCandidateId) || {}).candidateType || ''; }
      }
    });
    out[p.name] = o;
  }
  return out;
})()`

func (b *browser) inbound() map[string]inbound {
	b.t.Helper()
	return eval[map[string]inbound](b, inboundJS)
}

// waitMedia waits until b decodes video and receives audio from each named member.
func (b *browser) waitMedia(timeout time.Duration, from ...string) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	first := b.inbound()
	for {
		time.Sleep(300 * time.Millisecond)
		now := b.inbound()
		ok := true
		for _, n := range from {
			p, q := first[n], now[n]
			if q.State != "connected" || q.FramesDecoded <= p.FramesDecoded || q.FramesDecoded < 5 || q.AudioSamples <= p.AudioSamples {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: no media from %v within %v: before %+v after %+v", b.name, from, timeout, trimSDP(first), trimSDP(now))
		}
		first = now
	}
}

// renegotiated says whether two local descriptions of one connection differ
// by more than the ICE candidates gathered into them: Chromium adds late
// candidates (a slow TURN allocation on a loaded machine) to the
// description it reports, and moves the m= port and c= address to the
// default one, without any new offer or answer. It returns the first
// differing line of each.
func renegotiated(before, after string) (bool, string, string) {
	keep := func(sdp string) []string {
		var out []string
		for _, l := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
			switch {
			case strings.HasPrefix(l, "a=candidate:"), l == "a=end-of-candidates", strings.HasPrefix(l, "c="):
			case strings.HasPrefix(l, "m="):
				if f := strings.Fields(l); len(f) > 1 {
					f[1] = "*"
					l = strings.Join(f, " ")
				}
				out = append(out, l)
			default:
				out = append(out, l)
			}
		}
		return out
	}
	a, b := keep(before), keep(after)
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return true, x, y
		}
	}
	return false, "", ""
}

func trimSDP(m map[string]inbound) map[string]inbound {
	out := map[string]inbound{}
	for k, v := range m {
		v.SDP = ""
		out[k] = v
	}
	return out
}

// tileJS selects the tile of a remote member by name.
func tileJS(name string) string {
	return fmt.Sprintf(`document.querySelector('.tile.remote[data-name=%q]')`, name)
}

// screenshot captures the viewport as PNG.
func (b *browser) screenshot() []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	return png
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
