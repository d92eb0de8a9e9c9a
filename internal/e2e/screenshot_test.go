//go:build screenshots

package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The documentation's screenshots (docs/screenshots), built only with
// -tags screenshots: `make screenshots`. Tests built without the tag take
// none (shots_test.go).

// 11. Screenshots of the home page, a 3-person call, the stats panel and a
// phone-sized call: what a new user sees.
func TestScreenshots(t *testing.T) {
	e := newEnv(t, nil)
	a := e.launch("Ada")
	a.do(20*time.Second, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(e.url+"/"))
	a.waitFor(5*time.Second, "the home page", `document.querySelector('#create')`)
	eval[bool](a, `(() => { const n = document.querySelector('#name'); n.value = 'Ada'; return true })()`)
	a.shot("home.png", 1280, 800)

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
	a.shot("call-3.png", 1280, 800)

	a.click("#btn-stats")
	a.waitFor(20*time.Second, "two stats cards with a path and a few graph points", `document.querySelectorAll('.stat-card .path[data-type="host"]').length === 2 &&
	  [...document.querySelectorAll('.stat-card canvas.bitrate')].filter(c => +c.dataset.points >= 12).length === 2`,
		`[document.querySelector('#panel').innerText, [...document.querySelectorAll('.stat-card canvas.bitrate')].map(c => c.dataset.points)]`)
	a.shot("stats.png", 1280, 800)

	a.click("#btn-chat")
	a.do(30*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	a.click("#panel-close")
	a.shot("call-phone.png", 390, 844)
}

// Screenshots: the host page with three screens and a screen page.
func TestShowScreenshots(t *testing.T) {
	e := newShowEnv(t)
	wav := filepath.Join(t.TempDir(), "tone.wav")
	writeToneWAV(t, wav, 1000, 30, 0.5)
	host := e.openShowHost("Host", "party-night", withSize(1280, 800))
	var screens []*browser
	for i, label := range []string{"R1C1", "R1C2", "R1C3"} {
		screens = append(screens, e.openScreen(fmt.Sprintf("Screen%d", i+1), "party-night", label, withSize(640, 400)))
	}
	host.waitFor(5*time.Second, "three tiles", `document.querySelectorAll('.show-tile[data-online="true"]').length === 3`)
	host.playFile(wav, true)
	screens[1].waitFor(20*time.Second, "the middle screen lit by 1 kHz", blueJS, screenRGB)
	host.selectOption("#palette", "hue")
	screens[1].waitFor(10*time.Second, "the hue palette", `document.body.dataset.palette === 'hue'`)
	host.waitFor(5*time.Second, "the middle tile lit", `+document.querySelectorAll('.show-tile')[1].dataset.level > 180`)
	host.do(30*time.Second, chromedp.EmulateViewport(1280, 800))
	eval[bool](host, `(() => { document.activeElement.blur(); window.scrollTo(0, 0); return true })()`)
	host.shot("show-host.png", 1280, 800)

	s := screens[1]
	s.do(30*time.Second, chromedp.EmulateViewport(640, 400))
	eval[bool](s, `(() => { document.body.classList.add('show-info'); return true })()`)
	s.shot("show-screen.png", 640, 400)
}
