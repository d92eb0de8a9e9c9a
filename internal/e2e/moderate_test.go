package e2e

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/sfu"
)

// sfuAuthEnv runs a server with auth whose room is in sfu mode, and mints
// "token=..." queries for it.
func sfuAuthEnv(t *testing.T, room string) (*env, func(name string, g auth.Grants) string) {
	t.Helper()
	secret := "e2e-grants-secret-0123456789abcdefgh"
	e := newEnv(t, func(c *config.Config) {
		c.AuthSecret = secret
		c.MediaUDP = "127.0.0.1:0"
		c.Rooms = map[string]config.RoomConfig{room: {Mode: "sfu"}}
	})
	return e, func(name string, g auth.Grants) string {
		tok, err := auth.NewToken([]byte(secret), room, name, g, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return "token=" + tok
	}
}

// pressOn focuses an element and presses a key on it, as a keyboard user
// does (the buttons must be reachable and work without a pointer).
func (b *browser) pressOn(sel, key string) {
	b.t.Helper()
	b.do(20*time.Second, chromedp.Focus(chromedp.CSS(sel), chromedp.NodeVisible), chromedp.KeyEvent(key))
}

// An admin's call page in an sfu room: moderator buttons with accessible
// names on the others' tiles (for admins only), mute by keyboard (the
// member's microphone shows muted and the server holds its track until it
// unmutes), the server closing a member's media (its page rebuilds the
// link by itself), remove, and end for all.
func TestGroupModeration(t *testing.T) {
	e, token := sfuAuthEnv(t, "board")
	ana, ben := e.launch("Ana"), e.launch("Ben")
	ana.join("board", token("ana", auth.Grants{Publish: true, Subscribe: true, Admin: true}))
	ben.join("board", token("ben", auth.AllGrants))
	ana.waitMedia(25*time.Second, "Ben")
	ben.waitMedia(25*time.Second, "Ana")

	mute := tileJS("Ben") + `.querySelector('.mod-mute')`
	ana.waitFor(5*time.Second, "moderator buttons with names on Ben's tile",
		mute+`.getAttribute('aria-label') === 'Mute Ben for everyone' && `+tileJS("Ben")+`.querySelector('.mod-remove').getAttribute('aria-label') === 'Remove Ben from the call' && !!document.querySelector('#btn-end-all:not([hidden])')`)
	if eval[bool](ben, `!!document.querySelector('.mod') || !!document.querySelector('#btn-end-all:not([hidden])')`) {
		t.Fatal("a member without the admin grant sees moderator buttons")
	}

	// Mute by keyboard: Ben's page mutes its microphone, the server holds
	// Ben's audio, and Ben turning the microphone back on releases it.
	ana.pressOn(`.tile.remote[data-name="Ben"] .mod-mute`, kb.Enter)
	ben.waitFor(10*time.Second, "Ben's microphone muted by the moderator", `document.querySelector('#btn-mic').getAttribute('aria-pressed') === 'true'`)
	ana.waitFor(10*time.Second, "Ben's audio held by the server", `parleyApp.client.link.tracks.some(t => t.publisher !== parleyApp.client.id && t.kind === 'audio' && t.muted)`)
	ana.waitFor(10*time.Second, "Ben's tile showing the microphone off", tileJS("Ben")+`.dataset.audioMuted === 'true'`)
	ben.click("#btn-mic")
	ana.waitFor(10*time.Second, "Ben's audio released", `parleyApp.client.link.tracks.some(t => t.kind === 'audio' && t.publisher !== parleyApp.client.id && !t.muted)`)

	// The server closes Ben's media: his page makes a new link and media
	// flow both ways again without a reload.
	eval[bool](ben, `window.oldLink = parleyApp.client.link; true`)
	room, ok := e.srv.SFU().LookupRoom(sfu.Calls, "board")
	if !ok {
		t.Fatal("no sfu room")
	}
	p, ok := room.Participant(eval[string](ben, `parleyApp.client.id`))
	if !ok {
		t.Fatal("no participant for Ben")
	}
	p.Close()
	ben.waitFor(10*time.Second, "a new link after media-closed", `parleyApp.client.link && parleyApp.client.link !== window.oldLink`)
	ana.waitMedia(30*time.Second, "Ben")
	ben.waitMedia(30*time.Second, "Ana")

	// Remove by keyboard.
	ana.pressOn(`.tile.remote[data-name="Ben"] .mod-remove`, kb.Enter)
	ben.waitFor(10*time.Second, "Ben told he was removed", `document.querySelector('#notice') && /removed/.test(document.querySelector('#notice').innerText) && parleyApp.client.state === 'closed'`, `document.body.innerText`)
	ana.waitFor(10*time.Second, "Ben's tile gone", `!`+tileJS("Ben"))

	// Ben comes back; Ana ends the call for everyone.
	ben.join("board", token("ben", auth.AllGrants))
	ana.waitFor(20*time.Second, "Ben back", tileJS("Ben")+` && `+tileJS("Ben")+`.querySelector('.mod-remove')`)
	ana.pressOn("#btn-end-all", kb.Enter)
	for _, b := range []*browser{ana, ben} {
		b.waitFor(10*time.Second, "the call ended", `document.querySelector('#notice') && /ended/.test(document.querySelector('#notice').innerText) && parleyApp.client.state === 'closed'`, `document.body.innerText`)
	}
}

// A viewer's token grants only subscribe: its page offers no sending
// sections and sends no data (so the server refuses nothing), receives the
// others' media, and what it types in the chat is refused with a clear
// message.
func TestGroupSubscribeOnly(t *testing.T) {
	e, token := sfuAuthEnv(t, "talk")
	ana, vic := e.launch("Ana"), e.launch("Vic")
	ana.join("talk", token("ana", auth.AllGrants))
	vic.join("talk", token("vic", auth.Grants{Subscribe: true}))
	eval[bool](vic, `window.errors = []; parleyApp.client.addEventListener('error', (e) => window.errors.push(e.detail.code + ': ' + e.detail.message)); true`)
	vic.waitFor(5*time.Second, "the grants from joined", `parleyApp.client.grants.subscribe && !parleyApp.client.grants.publish && !parleyApp.client.grants.admin`)
	vic.waitMedia(25*time.Second, "Ana")
	if errs := eval[[]string](vic, `window.errors`); len(errs) != 0 {
		t.Fatalf("errors in the call: %v", errs)
	}
	if n := eval[int](vic, `parleyApp.client.link.pc.getTransceivers().filter(t => t.direction === 'sendonly' || t.direction === 'sendrecv').length`); n != 0 {
		t.Fatalf("the subscribe-only page offers %d sending sections", n)
	}
	ana.waitFor(15*time.Second, "Vic's tile, without video", tileJS("Vic")+` && `+tileJS("Vic")+`.dataset.hasVideo === 'false'`)
	vic.waitFor(10*time.Second, "the relay channel open", `parleyApp.client.peers.size === 1 && [...parleyApp.client.peers.values()].every(p => p.channels.chat.readyState === 'open')`)
	vic.click("#btn-chat")
	vic.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "hello?"), chromedp.Click(chromedp.CSS("#chat-send")))
	vic.waitFor(10*time.Second, "the chat refused for want of publish", `window.errors.some(e => e.startsWith('forbidden: ') && /publish grant/.test(e)) && parleyApp.client.state === 'joined' && !document.querySelector('#chat-list .msg')`, `window.errors`)
	ana.click("#btn-chat")
	if eval[bool](ana, `[...document.querySelectorAll('#chat-list .msg')].some(m => m.textContent.includes('hello?'))`) {
		t.Fatal("Vic's chat was relayed")
	}
}
