package e2e

import (
	_ "embed"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/parley/parley/internal/config"
)

// axe is axe-core 4.14.1 (npm, MPL-2.0), the accessibility checker, used
// only by this test and never served by Parley.
//
//go:embed testdata/axe.min.js
var axe string

// a11yViolations runs axe-core on the page for WCAG 2.0/2.1 A and AA and
// returns its violations in words ("" when none).
func a11yViolations(b *browser) string {
	b.t.Helper()
	if !eval[bool](b, `typeof axe === 'object'`) {
		eval[bool](b, `(() => { `+axe+`; return true })()`)
	}
	v := eval[[]string](b, `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
	  .then(r => r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' [' + (n.any[0] ? n.any[0].message : n.failureSummary) + ']').join(', ')))`)
	return strings.Join(v, "\n")
}

// TestAccessibility: every page meets WCAG 2.1 AA as axe-core checks it,
// in the states a person sees first: home, a call before and after
// joining, a broadcast's publisher and viewer pages (the viewer with the
// stream's URL list open on the publisher page), a light show's host and
// screen pages, the operators' status page, the watch page set to play HLS;
// at a desktop and a phone size.
func TestAccessibility(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { // every listener on, so the broadcast page lists every URL
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTMP, c.RTSP, c.SRT = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	})
	for _, size := range [][2]int{{1280, 800}, {390, 844}} {
		b := e.launch(fmt.Sprintf("Ada%d", size[0]), withSize(size[0], size[1]))
		check := func(what string) {
			t.Helper()
			if v := a11yViolations(b); v != "" {
				t.Errorf("%dx%d %s: WCAG 2.1 AA violations:\n%s", size[0], size[1], what, v)
			}
		}
		b.do(20*time.Second, chromedp.Navigate(e.url+"/"))
		b.waitFor(10*time.Second, "the home page", `document.querySelector('#create')`)
		check("home page")

		b.open("a11y-room", "")
		b.waitFor(10*time.Second, "the call page's join form", `document.querySelector('#join')`)
		check("call page before joining")
		b.join("a11y-room")
		check("call page in a call")

		b.do(20*time.Second, chromedp.Navigate(e.url+"/b/a11y"))
		b.waitFor(10*time.Second, "the broadcast page", `document.readyState === 'complete' && document.querySelector('main')`)
		check("broadcast (publisher) page")
		eval[bool](b, `(() => { document.getElementById('ingest').open = true; return true })()`)
		b.waitFor(10*time.Second, "the URL list", `document.querySelectorAll('#ingest button').length >= 8`, `document.getElementById('ingest').innerText`)
		check("broadcast page with its URL list open")

		b.do(20*time.Second, chromedp.Navigate(e.url+"/w/a11y"))
		b.waitFor(10*time.Second, "the watch page", `document.readyState === 'complete' && window.parleyWatch`)
		check("watch page")

		// Asked to play over HLS (as when WebRTC cannot): the badge says HLS.
		b.do(20*time.Second, chromedp.Navigate(e.url+"/w/a11y?hls"))
		b.waitFor(10*time.Second, "the watch page set for HLS", `window.parleyWatch && document.querySelector('#path').textContent.includes('HLS')`)
		check("watch page over HLS")

		b.do(20*time.Second, chromedp.Navigate(e.url+"/show/a11y"))
		b.waitFor(10*time.Second, "the light show host page", `document.readyState === 'complete' && document.querySelector('main')`)
		check("light show host page")

		b.do(20*time.Second, chromedp.Navigate(e.url+"/show/a11y/screen"))
		// Nobody plays: the screen says so, its status faded in.
		b.waitFor(10*time.Second, "the light show screen page with its status shown",
			`getComputedStyle(document.querySelector('.screen-info')).opacity === '1'`,
			`[document.body.dataset.audio, getComputedStyle(document.querySelector('.screen-info')).opacity]`)
		check("light show screen page")

		// The operators' status page, on the operations listener, showing
		// the broadcast the watch page above left live or not.
		b.do(20*time.Second, chromedp.Navigate(e.srv.OpsURL()+"/status"))
		b.waitFor(10*time.Second, "the status page with its first report", `document.getElementById('summary').textContent.startsWith('Up')`,
			`document.getElementById('summary').textContent`)
		check("status page")

		// The recordings page, on the operations listener (empty list).
		b.do(20*time.Second, chromedp.Navigate(e.srv.OpsURL()+"/recordings"))
		b.waitFor(10*time.Second, "the recordings page with its list", `document.getElementById('summary').textContent.includes('files')`,
			`document.getElementById('summary').textContent`)
		check("recordings page")
	}
}
