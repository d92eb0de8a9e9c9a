package e2e

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/config"
)

// The same page in a server-routed ("sfu") room: one connection per browser
// to the server, three members see each other, chat, a file and hang-up
// travel through the server's data relay.
func TestSFURoom(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP = "127.0.0.1:0"
		c.Rooms = map[string]config.RoomConfig{"stage": {Mode: "sfu"}}
	})
	names := []string{"Ana", "Ben", "Cy"}
	var bs []*browser
	for _, n := range names {
		b := e.launch(n)
		b.join("stage")
		bs = append(bs, b)
	}
	for i, b := range bs {
		b.waitFor(10*time.Second, "an sfu room", `parleyApp.client.mode === 'sfu' && parleyApp.client.link`)
		var others []string
		for j, n := range names {
			if j != i {
				others = append(others, n)
			}
		}
		b.waitMedia(25*time.Second, others...)
		b.waitFor(5*time.Second, "two remote tiles with video", `document.querySelectorAll('.tile.remote[data-has-video="true"]').length === 2`,
			`[...document.querySelectorAll('.tile')].map(t => t.dataset)`)
	}
	a, b, c := bs[0], bs[1], bs[2]
	if n := eval[int](a, `new Set([...parleyApp.client.peers.values()].map(p => p.pc)).size`); n != 1 {
		t.Fatalf("%d peer connections in an sfu room, want 1", n)
	}

	for _, x := range bs {
		x.waitFor(10*time.Second, "the relay channel open", `parleyApp.client.peers.size === 2 && [...parleyApp.client.peers.values()].every(p => p.channels.chat.readyState === 'open')`)
	}
	a.click("#btn-chat")
	a.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "via the server"), chromedp.Click(chromedp.CSS("#chat-send")))
	for _, x := range []*browser{b, c} {
		x.click("#btn-chat")
		x.waitFor(5*time.Second, "Ana's message", `[...document.querySelectorAll('#chat-list .msg')].some(m => m.querySelector('.msg-name').textContent === 'Ana' && m.querySelector('.msg-text').textContent === 'via the server')`)
	}

	p, sum := writeRandomFile(t, "relayed.bin", 2<<20+77, 5)
	a.click("#btn-files")
	b.click("#btn-files")
	a.waitFor(5*time.Second, "Ben in the recipient list", `[...document.querySelectorAll('#file-to option')].some(o => o.textContent === 'Ben')`)
	eval[bool](a, `(() => { const s = document.querySelector('#file-to'); s.value = [...s.options].find(o => o.textContent === 'Ben').value; return true })()`)
	a.do(30*time.Second, chromedp.SetUploadFiles(chromedp.CSS("#file-input"), []string{p}))
	b.waitFor(60*time.Second, "the file received and verified", transferDone("in", "relayed.bin"), `document.querySelector('#transfers').innerText`)
	a.waitFor(5*time.Second, "the sender at 100 %", transferDone("out", "relayed.bin"))
	if got := eval[string](b, receivedSHA("relayed.bin")); got != sum {
		t.Fatalf("relayed.bin SHA-256 %s, want %s", got, sum)
	}
	c.waitFor(10*time.Second, "Cy not getting Ben's file", `!document.querySelector('.transfer')`)

	a.click("#btn-cam")
	b.waitFor(10*time.Second, "Ana's tile muted", tileJS("Ana")+`.dataset.videoMuted === 'true'`)
	a.click("#btn-hangup")
	for _, x := range []*browser{b, c} {
		x.waitFor(10*time.Second, "Ana's tile removed", `!`+tileJS("Ana"))
	}
}
