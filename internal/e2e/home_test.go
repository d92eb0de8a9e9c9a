package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Home page: the name is remembered, "Create" makes a readable room id, a room
// link without a room makes a new one, and joining by name validates it.
func TestHomeAndRoomLinks(t *testing.T) {
	e := newEnv(t, nil)
	a := e.launch("Zoe")
	a.do(20*time.Second, chromedp.Navigate(e.url+"/"))
	a.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#name"), "Zoe"))
	a.click("#create")
	a.waitFor(10*time.Second, "a new room with a readable id", `/^\/r\/[a-z]+-[a-z]+-\d\d$/.test(location.pathname) && document.querySelector('#name-input')`, `location.href`)
	a.waitFor(5*time.Second, "the name carried over", `document.querySelector('#name-input').value === 'Zoe'`)
	a.do(20*time.Second, chromedp.Navigate(e.url+"/"))
	a.waitFor(5*time.Second, "the name remembered", `document.querySelector('#name').value === 'Zoe'`)

	a.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#room"), "bad room!"), chromedp.Click(chromedp.CSS("#join-room")))
	a.waitFor(10*time.Second, "a validation message", `/letters, digits/.test(document.querySelector('.form-error').textContent)`)
	eval[bool](a, `(() => { document.querySelector('#room').value = ''; return true })()`)
	a.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#room"), e.url+"/r/Team.Sync_1"), chromedp.Click(chromedp.CSS("#join-room")))
	a.waitFor(10*time.Second, "the pasted room link opened", `location.pathname === '/r/Team.Sync_1' && document.querySelector('.room-title').textContent === 'Team.Sync_1'`, `location.href`)

	a.do(20*time.Second, chromedp.Navigate(e.url+"/r/"))
	a.waitFor(10*time.Second, "a link without a room making a new one", `/^\/r\/[a-z]+-[a-z]+-\d\d$/.test(location.pathname) && document.querySelector('#join')`, `location.href`)
	a.do(20*time.Second, chromedp.Navigate(e.url+"/r/no%20spaces"))
	a.waitFor(5*time.Second, "an invalid room explained", `/not a room name/.test(document.body.innerText)`, `document.body.innerText`)
}

// Perfect negotiation: both sides renegotiate at the same moment (ICE
// restart); the collision is resolved and the call continues.
func TestGlare(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	a.join("glare")
	b.join("glare")
	a.waitMedia(15*time.Second, "Bob")
	b.waitMedia(15*time.Second, "Alice")
	// Both pages restart at the same moment of the shared clock (the two
	// browsers run on one machine): DevTools calls, even sent in parallel,
	// reach loaded browsers hundreds of milliseconds apart, and an offer
	// answered before the other side restarts is no collision.
	const restart = `(at => { const p = [...parleyApp.client.peers.values()][0];
	  window.offersBefore = p.pc.localDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1];
	  setTimeout(() => p.pc.restartIce(), at - Date.now()); return true })`
	for round := range 3 {
		at := time.Now().Add(1500 * time.Millisecond).UnixMilli()
		for _, x := range []*browser{a, b} {
			eval[bool](x, fmt.Sprintf("%s(%d)", restart, at))
		}
		for _, x := range []*browser{a, b} {
			x.waitFor(10*time.Second, "renegotiated with new ICE credentials and stable",
				`(() => { const p = [...parleyApp.client.peers.values()][0];
				  return p.pc.signalingState === 'stable' && p.pc.connectionState === 'connected' &&
				    p.pc.localDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1] !== window.offersBefore })()`,
				`(() => { const p = [...parleyApp.client.peers.values()][0]; return [p.pc.signalingState, p.pc.connectionState, p.collisions] })()`)
		}
		a.waitMedia(10*time.Second, "Bob")
		b.waitMedia(10*time.Second, "Alice")
		t.Logf("round %d: both restarts resolved", round+1)
	}
	n := eval[int](a, `[...parleyApp.client.peers.values()][0].collisions`) + eval[int](b, `[...parleyApp.client.peers.values()][0].collisions`)
	t.Logf("offer collisions resolved: %d", n)
	if n == 0 {
		t.Fatal("the simultaneous restarts never collided; the test did not exercise glare")
	}
}
