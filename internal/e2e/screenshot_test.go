package e2e

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// saveShot checks that data is a PNG of the expected size and writes it to
// docs/screenshots when PARLEY_UPDATE_SCREENSHOTS=1 (else to a temp dir).
func saveShot(t *testing.T, name string, data []byte, w, h int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", name, err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Fatalf("%s: %dx%d, want %dx%d", name, b.Dx(), b.Dy(), w, h)
	}
	dir := t.TempDir()
	if os.Getenv("PARLEY_UPDATE_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs", "screenshots")
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// 11. Screenshots of the home page, a 3-person call, the stats panel and a
// phone-sized call: what a new user sees.
func TestScreenshots(t *testing.T) {
	e := newEnv(t, nil)
	a := e.launch("Ada")
	a.do(20*time.Second, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(e.url+"/"))
	a.waitFor(5*time.Second, "the home page", `document.querySelector('#create')`)
	eval[bool](a, `(() => { const n = document.querySelector('#name'); n.value = 'Ada'; return true })()`)
	saveShot(t, "home.png", a.screenshot(), 1280, 800)

	b, c := e.launch("Grace"), e.launch("Linus")
	a.join("design-review")
	b.join("design-review")
	c.join("design-review")
	a.waitMedia(20*time.Second, "Grace", "Linus")
	a.waitFor(10*time.Second, "both remote tiles showing video", `document.querySelectorAll('.tile.remote[data-has-video="true"]').length === 2`)
	// Some life in the picture: Linus muted his microphone, Grace said hello.
	c.click("#btn-mic")
	b.click("#btn-chat")
	b.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "Hi all! Slides are in the Files tab."), chromedp.Click(chromedp.CSS("#chat-send")))
	a.waitFor(5*time.Second, "the unread badge", `!document.querySelector('#unread').hidden`)
	a.waitFor(10*time.Second, "Linus shown muted", tileJS("Linus")+`.dataset.audioMuted === 'true'`)
	a.waitFor(10*time.Second, "the toasts gone", `!document.querySelector('#toasts .toast')`)
	saveShot(t, "call-3.png", a.screenshot(), 1280, 800)

	a.click("#btn-stats")
	a.waitFor(20*time.Second, "two stats cards with a path and a few graph points", `document.querySelectorAll('.stat-card .path[data-type="host"]').length === 2 &&
	  parleyApp.stats.history.size === 2 && [...parleyApp.stats.history.values()].every(h => h.length >= 12)`,
		`[document.querySelector('#panel').innerText, [...parleyApp.stats.history.values()].map(h => h.length)]`)
	saveShot(t, "stats.png", a.screenshot(), 1280, 800)

	a.click("#btn-chat")
	a.do(30*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	a.click("#panel-close")
	time.Sleep(500 * time.Millisecond)
	saveShot(t, "call-phone.png", a.screenshot(), 390, 844)
}
