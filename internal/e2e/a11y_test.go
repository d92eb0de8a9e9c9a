package e2e

import (
	_ "embed"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/parley/parley/internal/config"
)

// axe is axe-core 4.14.1 (npm, MPL-2.0), the accessibility checker, used
// only by this test and never served by Parley.
//
//go:embed testdata/axe.min.js
var axe string

// a11yViolations runs axe-core on the page for WCAG 2.0/2.1 A and AA and
// returns its serious and critical violations in words ("" when none). The
// moderate and minor ones are logged, not failed.
func a11yViolations(b *browser) string {
	b.t.Helper()
	if !eval[bool](b, `typeof axe === 'object'`) {
		eval[bool](b, `(() => { `+axe+`; return true })()`)
	}
	type violation struct {
		Impact string `json:"impact"`
		Text   string `json:"text"`
	}
	vs := eval[[]violation](b, `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
	  .then(r => r.violations.map(v => ({impact: v.impact || '', text: v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' [' + (n.any[0] ? n.any[0].message : n.failureSummary) + ']').join(', ')})))`)
	var serious []string
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			serious = append(serious, v.Text)
		} else {
			b.t.Logf("%s: axe (not failing): %s", b.name, v.Text)
		}
	}
	return strings.Join(serious, "\n")
}

// TestAccessibility: every page state the browser tests reach meets WCAG
// 2.1 AA as axe-core checks it (serious or critical violations fail), at a
// desktop and a phone size: home; a call's lobby, the call with a second
// member, each side panel open (chat with a message, files, statistics
// with the member's card, settings), the share menu, and the page after
// Leave; a broadcast's publisher page off air, with its URL list open and
// live; the watch page playing a live broadcast, and set to play HLS; a
// light show's host page, a screen's flashing-lights warning and the
// screen running; the operators' status and recordings pages. At the phone
// size every call control is on screen, not cut off, and the connection
// state has a mark whose shape, not only its colour, says it.
func TestAccessibility(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { // every listener on, so the broadcast page lists every URL
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTMP, c.RTSP, c.SRT = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	})
	sizes := [][2]int{{1280, 800}, {390, 844}}
	check := func(b *browser, size [2]int, what string) {
		t.Helper()
		if v := a11yViolations(b); v != "" {
			t.Errorf("%dx%d %s: WCAG 2.1 AA violations:\n%s", size[0], size[1], what, v)
		}
		// axe's rule for a page's h1 is a best practice, outside the WCAG tags.
		if h := eval[int](b, `[...document.querySelectorAll('h1')].filter(x => x.checkVisibility()).length`); h != 1 {
			t.Errorf("%dx%d %s: %d h1 headings, want 1", size[0], size[1], what, h)
		}
	}
	// focusRing focuses a field and fails the test unless it shows an
	// outline of 2 px or more: fields and sliders show where the focus is.
	focusRing := func(b *browser, sel string) {
		t.Helper()
		// A headless page is not the focused window; emulate that it is, as
		// it would be in front of a person.
		if _, err := chromedp.Call(b.ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true}); err != nil {
			t.Fatalf("emulating focus: %v", err)
		}
		b.do(20*time.Second, chromedp.Focus(chromedp.CSS(sel)))
		if o := eval[string](b, `(() => { const s = getComputedStyle(document.activeElement);
		    return s.outlineStyle === 'none' || parseFloat(s.outlineWidth) < 2 ? '' : s.outlineStyle + ' ' + s.outlineWidth + ' ' + s.outlineColor })()`); o == "" {
			t.Errorf("%s: no visible focus ring when focused: %v", sel, eval[any](b, `(() => { const e = document.activeElement, s = getComputedStyle(e);
			  return [e.id, e.matches(':focus-visible'), document.hasFocus(), s.outlineStyle, s.outlineWidth, s.boxShadow] })()`))
		}
	}

	// Bob is in the call, so tiles, chat and statistics have someone in them.
	bob := e.launch("Bob")
	bob.join("a11y-room")
	for _, size := range sizes {
		b := e.launch(fmt.Sprintf("Ada%d", size[0]), withSize(size[0], size[1]))
		b.do(20*time.Second, chromedp.Navigate(e.url+"/"))
		b.waitFor(10*time.Second, "the home page", `document.querySelector('#create')`)
		check(b, size, "home page")
		focusRing(b, "#room")

		b.open("a11y-room", "")
		check(b, size, "call page before joining")
		b.join("a11y-room")
		b.waitFor(20*time.Second, "Bob's tile connected", `document.querySelector('.tile.remote[data-state="connected"]')`, `document.querySelector('#grid').innerHTML.slice(0, 300)`)
		check(b, size, "call page in a call")
		// Nothing cut off: every control inside the window and the toolbar
		// not scrolled; the connection state's mark is a tick, not a dot.
		if off := eval[[]string](b, `[...document.querySelectorAll('.controls button')].filter(x => { const r = x.getBoundingClientRect();
		    return r.left < 0 || r.right > innerWidth || r.bottom > innerHeight || r.width === 0 }).map(x => x.textContent)
		  .concat(document.querySelector('.controls').scrollWidth > document.querySelector('.controls').clientWidth ? ['(toolbar scrolls)'] : [])`); len(off) > 0 {
			t.Errorf("%dx%d: call controls cut off: %q", size[0], size[1], off)
		}
		if c := eval[string](b, `getComputedStyle(document.querySelector('#conn'), '::before').content`); c != `"✓"` {
			t.Errorf("%dx%d: connected state's mark %s, want a tick", size[0], size[1], c)
		}
		bob.click("#btn-chat")
		bob.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "hello "+b.name), chromedp.Click(chromedp.CSS("#chat-send")))
		bob.click("#panel-close")
		for _, p := range []string{"chat", "files", "stats", "settings"} {
			b.click("#btn-" + p)
			b.waitFor(10*time.Second, "the "+p+" panel", `!document.querySelector('#panel').hidden && document.querySelector('#panel').dataset.panel === '`+p+`'`)
			switch p {
			case "chat":
				b.waitFor(10*time.Second, "Bob's message", `document.querySelector('#chat-list').textContent.includes('hello `+b.name+`')`)
			case "stats":
				b.waitFor(10*time.Second, "Bob's statistics", `document.querySelector('.stat-card dd[data-key="rtt"]')`)
			case "settings":
				b.waitFor(10*time.Second, "the settings", `document.querySelector('#bitrate-select')`)
			}
			check(b, size, p+" panel open")
			b.click("#panel-close")
			b.waitFor(10*time.Second, "the panel closed", `document.querySelector('#panel').hidden`)
		}
		b.click("#btn-share")
		b.waitFor(10*time.Second, "the share menu", `document.querySelector('#share-menu')`)
		check(b, size, "share menu open")
		b.click("#btn-share")
		b.click("#btn-hangup")
		b.waitFor(10*time.Second, "the page after Leave", `document.querySelector('#notice[data-kind="left"]')`)
		check(b, size, "after leaving the call")
	}

	// Bob broadcasts the stream the watch pages play.
	bob.do(20*time.Second, chromedp.Navigate(e.url+"/b/a11y?res=360&fps=15"))
	bob.waitFor(20*time.Second, "Bob's publisher page ready", `window.parleyApp && !document.querySelector('#go-live').disabled`, `document.body.innerText`)
	bob.click("#go-live")
	bob.waitFor(15*time.Second, "Bob live", `document.body.dataset.state === 'live'`, `document.querySelector('#status').textContent`)

	for _, size := range sizes {
		b := e.launch(fmt.Sprintf("Cy%d", size[0]), withSize(size[0], size[1]))
		stream := fmt.Sprintf("a11y%d", size[0])
		b.do(20*time.Second, chromedp.Navigate(e.url+"/b/"+stream+"?res=360&fps=15&chat=1"))
		b.waitFor(20*time.Second, "the publisher page ready", `window.parleyApp && !document.querySelector('#go-live').disabled`, `document.body.innerText`)
		check(b, size, "broadcast (publisher) page")
		eval[bool](b, `(() => { document.getElementById('ingest').open = true; return true })()`)
		b.waitFor(10*time.Second, "the URL list", `document.querySelectorAll('#ingest button').length >= 8`, `document.getElementById('ingest').innerText`)
		check(b, size, "broadcast page with its URL list open")
		b.click("#go-live")
		b.waitFor(15*time.Second, "the broadcast live", `document.body.dataset.state === 'live' && !document.querySelector('#live-badge').hidden`, `document.querySelector('#status').textContent`)
		check(b, size, "broadcast page live")

		b.do(20*time.Second, chromedp.Navigate(e.url+"/w/a11y"))
		b.waitFor(10*time.Second, "the watch page", `document.readyState === 'complete' && window.parleyApp && document.body.dataset.state`)
		b.waitDecoding(25 * time.Second)
		check(b, size, "watch page playing")

		// Asked to play over HLS (as when WebRTC cannot): the badge says HLS.
		b.do(20*time.Second, chromedp.Navigate(e.url+"/w/a11y?hls"))
		b.waitFor(10*time.Second, "the watch page set for HLS", `window.parleyApp && document.querySelector('#path').textContent.includes('HLS')`)
		check(b, size, "watch page over HLS")

		b.do(20*time.Second, chromedp.Navigate(e.url+"/show/a11y"))
		b.waitFor(10*time.Second, "the light show host page", `window.parleyApp && document.querySelector('#ctl').dataset.state === 'joined'`)
		check(b, size, "light show host page")
		focusRing(b, "#gain") // a slider

		b.do(20*time.Second, chromedp.Navigate(e.url+"/show/a11y/screen"))
		b.waitFor(10*time.Second, "the flashing-lights warning", `window.parleyApp && !document.querySelector('#start').hidden && document.activeElement.id === 'btn-start'`)
		check(b, size, "light show screen's warning")
		b.key(kb.Enter) // on the focused Start button (a click would bring up the tools for a while)
		// Nobody plays: the screen says so, its status faded in.
		b.waitFor(10*time.Second, "the light show screen page with its status shown",
			`document.querySelector('#start').hidden && getComputedStyle(document.querySelector('.screen-info')).opacity === '1'`,
			`[document.body.dataset.audio, getComputedStyle(document.querySelector('.screen-info')).opacity]`)
		check(b, size, "light show screen page")

		// The operators' status page, on the operations listener, showing
		// the live broadcasts.
		b.do(20*time.Second, chromedp.Navigate(e.srv.OpsURL()+"/status"))
		b.waitFor(10*time.Second, "the status page with its first report", `document.getElementById('summary').textContent.startsWith('Up')`,
			`document.getElementById('summary').textContent`)
		check(b, size, "status page")

		// The recordings page, on the operations listener (empty list).
		b.do(20*time.Second, chromedp.Navigate(e.srv.OpsURL()+"/recordings"))
		b.waitFor(10*time.Second, "the recordings page with its list", `document.getElementById('summary').textContent.includes('files')`,
			`document.getElementById('summary').textContent`)
		check(b, size, "recordings page")
	}
}

// flashRateJS counts, for 2.5 s, the flashes (WCAG 2.3.1: pairs of
// opposing changes of 10 % or more in relative luminance) in the colours
// the screen paints while the show's broadcast API sends it a 100 ms white
// flash 8 times a second, as a host hammering Flash might. It leaves
// window.__flashRate = {max: most changes within any 1 s, frames}.
const flashRateJS = `(() => {
  window.__flashRate = null;
  const lum = (rgb) => { const l = rgb.map(c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4 });
    return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2] };
  const name = location.pathname.split('/')[2];
  const send = setInterval(() => fetch('/api/shows/' + name + '/broadcast', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{"flash":"#ffffff","ms":100}'}), 125);
  const changes = []; let ext = null, dir = 0, start = 0, frames = 0;
  const step = (now) => {
    if (!start) start = now;
    frames++;
    const L = lum(` + screenRGB + `);
    if (ext === null) ext = L; // the last extreme, and which way the luminance is going from it
    else if (dir === 0) { if (Math.abs(L - ext) >= 0.1) { dir = Math.sign(L - ext); changes.push(now); ext = L } }
    else if ((L - ext) * dir > 0) ext = L;
    else if (Math.abs(L - ext) >= 0.1) { dir = -dir; changes.push(now); ext = L }
    if (now - start < 2500) return requestAnimationFrame(step);
    clearInterval(send);
    let max = 0;
    for (let i = 0; i < changes.length; i++) max = Math.max(max, changes.filter(t => t >= changes[i] && t - changes[i] < 1000).length);
    window.__flashRate = {max, frames};
  };
  requestAnimationFrame(step);
  return true;
})()`

// TestShowCalmMode: a light-show screen in a browser that prefers reduced
// motion starts with calm mode chosen under its flashing-lights warning;
// calm, a host flashing the screens 8 times a second makes at most 3
// flashes a second on it; with calm mode turned off (its button) the same
// makes more, so the count would catch them.
func TestShowCalmMode(t *testing.T) {
	e := newBroadcastEnv(t)
	s := e.launch("Screen", withSize(640, 400))
	if _, err := chromedp.Call(s.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-reduced-motion", Value: "reduce"}}}); err != nil {
		t.Fatalf("emulating reduced motion: %v", err)
	}
	s.do(30*time.Second, chromedp.Navigate(e.url+"/show/calm/screen"))
	s.waitFor(15*time.Second, "the warning with calm mode chosen", `window.parleyApp && !document.querySelector('#start').hidden && document.querySelector('#calm').checked`,
		`[document.querySelector('#calm').checked, matchMedia('(prefers-reduced-motion: reduce)').matches]`)
	s.key(kb.Enter)
	s.waitFor(15*time.Second, "the screen started", `document.querySelector('#start').hidden && document.querySelector('#btn-calm').getAttribute('aria-pressed') === 'true' && document.body.dataset.control === 'open'`, `[document.body.dataset, document.querySelector('#btn-calm').outerHTML]`)
	rate := func(what string) float64 {
		t.Helper()
		eval[bool](s, flashRateJS)
		s.waitFor(15*time.Second, "the flashes counted ("+what+")", `window.__flashRate`)
		r := eval[struct {
			Max, Frames float64
		}](s, `window.__flashRate`)
		t.Logf("%s: at most %v luminance changes of 10 %% or more in 1 s (%v frames)", what, r.Max, r.Frames)
		return r.Max
	}
	if n := rate("calm"); n > 6 {
		t.Errorf("calm mode: %v changes within a second, more than 3 flashes", n)
	}
	s.do(20*time.Second, chromedp.Focus(chromedp.CSS("#btn-calm")), chromedp.KeyEvent(kb.Enter))
	s.waitFor(10*time.Second, "calm mode off", `!document.querySelector('#calm').checked && document.querySelector('#btn-calm').getAttribute('aria-pressed') === 'false'`)
	if n := rate("not calm"); n <= 6 {
		t.Errorf("without calm mode: only %v changes within a second; the count misses flashes", n)
	}
}
