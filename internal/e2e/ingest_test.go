package e2e

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/config"
)

// TestBroadcastIngestURLs: on a phone-sized broadcast page the stream's
// publish and read URLs are listed for the listeners that are on (WHIP,
// RTMP with its bound port; WHEP, the watch page, RTMP), each copy button puts
// its URL on the clipboard (by mouse and by keyboard) and says so in a
// live region; with auth on the notes say where the token goes and no
// token is printed.
func TestBroadcastIngestURLs(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTMP = "127.0.0.1:0"
		c.AuthSecret = "e2e-ingest-secret-of-32-bytes-ok"
	})
	b := e.launch("Host", withSize(390, 844))
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(b.ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: name}, Setting: cdpbrowser.PermissionSettingGranted, Origin: e.url}); err != nil {
			t.Fatal(err)
		}
	}
	b.do(30*time.Second, chromedp.Navigate(e.url+"/b/show-1?token=SECRET-IN-PAGE"))
	b.waitFor(10*time.Second, "the URL list", `document.querySelectorAll('#ingest-publish li').length > 0`, `document.querySelector('#ingest').innerText`)

	rtmp := "rtmp://127.0.0.1:" + strconv.Itoa(e.srv.RTMPAddr().(*net.TCPAddr).Port) + "/live/show-1"
	urls := eval[map[string][]string](b, `({
	  publish: [...document.querySelectorAll('#ingest-publish li')].map(li => li.dataset.proto + ' ' + li.querySelector('code').textContent),
	  read: [...document.querySelectorAll('#ingest-read li')].map(li => li.dataset.proto + ' ' + li.querySelector('code').textContent)})`)
	wantPub := []string{"WHIP " + e.url + "/whip/show-1", "RTMP " + rtmp}
	wantRead := []string{"WHEP " + e.url + "/whep/show-1", "Watch page " + e.url + "/w/show-1", "RTMP " + rtmp}
	if !slices.Equal(urls["publish"], wantPub) || !slices.Equal(urls["read"], wantRead) {
		t.Errorf("URLs %q, want publish %q read %q (RTSP and SRT are off)", urls, wantPub, wantRead)
	}
	text := eval[string](b, `document.querySelector('#ingest').textContent`)
	if !strings.Contains(text, "?token=<token>") || strings.Contains(text, "SECRET-IN-PAGE") {
		t.Errorf("token notes: %q", text)
	}
	// Every copy button is named for what it copies.
	if n := eval[int](b, `[...document.querySelectorAll('#ingest button')].filter(x => !/^Copy (WHIP|RTMP|WHEP|Watch page) (publish|read) URL$/.test(x.getAttribute('aria-label'))).length`); n != 0 {
		t.Errorf("%d copy buttons without a clear name", n)
	}

	b.click("#ingest summary")
	b.click(`#ingest-publish li[data-proto="RTMP"] button`)
	b.waitFor(5*time.Second, "the copied confirmation", `document.querySelector('#ingest-copied').textContent === 'RTMP publish URL copied'`, `document.querySelector('#ingest-copied').textContent`)
	if got := eval[string](b, `navigator.clipboard.readText()`); got != rtmp {
		t.Errorf("clipboard %q, want %q", got, rtmp)
	}
	// By keyboard: focus the WHEP button and press Enter.
	b.do(10*time.Second, chromedp.Focus(chromedp.CSS(`#ingest-read li[data-proto="WHEP"] button`), chromedp.NodeVisible), chromedp.KeyEvent("\r"))
	b.waitFor(5*time.Second, "the WHEP copied confirmation", `document.querySelector('#ingest-copied').textContent === 'WHEP read URL copied'`)
	if got := eval[string](b, `navigator.clipboard.readText()`); got != e.url+"/whep/show-1" {
		t.Errorf("clipboard %q after the keyboard copy", got)
	}
	if eval[string](b, `document.querySelector('#ingest-copied').getAttribute('aria-live')`) != "polite" {
		t.Error("the confirmation is not a live region")
	}
	// It fits the phone: nothing in the list is wider than the screen.
	if w := eval[float64](b, `Math.max(...[...document.querySelectorAll('#ingest li')].map(li => li.getBoundingClientRect().right)) - innerWidth`); w > 0 {
		t.Errorf("the URL list overflows a 390 px screen by %.0f px", w)
	}

	// RTSP and SRT, as the page writes them when they are on.
	more := eval[map[string][]string](b, `import('/app/ingest-urls.js').then(m => {
	  const w = m.ways({host: '[2001:db8::1]', auth: false, media: true, rtmp: {port: 1935, publish: true, read: false},
	    rtsp: {port: 8554, publish: true, read: true}, srt: {port: 8890, publish: true, read: true}}, 'cam 1', 'https://x.example');
	  return {publish: w.publish.map(x => x.url), read: w.read.map(x => x.url)};
	})`)
	if !slices.Equal(more["publish"], []string{"https://x.example/whip/cam%201", "rtmp://[2001:db8::1]:1935/live/cam%201",
		"srt://[2001:db8::1]:8890?streamid=publish:cam%201", "rtsp://[2001:db8::1]:8554/cam%201"}) ||
		!slices.Equal(more["read"], []string{"https://x.example/whep/cam%201", "https://x.example/w/cam%201",
			"rtsp://[2001:db8::1]:8554/cam%201", "srt://[2001:db8::1]:8890?streamid=read:cam%201"}) {
		t.Errorf("all listeners: %q", more)
	}
}
