package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// focusedJS names the focused element: "#id", or its tag and text.
const focusedJS = `(() => { const e = document.activeElement; if (!e || e === document.body) return 'body';
  return e.id ? '#' + e.id : e.tagName.toLowerCase() + ':' + (e.textContent || '').trim().slice(0, 40); })()`

// key presses keys on whatever has the focus, as a person at a keyboard.
func (b *browser) key(keys string, opts ...chromedp.KeyOption) {
	b.t.Helper()
	b.do(20*time.Second, chromedp.KeyEvent(keys, opts...))
}

// focusIs waits until the focus is on the element sel matches; it is never
// the page's body.
func (b *browser) focusIs(what, sel string) {
	b.t.Helper()
	b.waitFor(10*time.Second, "focus on "+what, fmt.Sprintf(`document.activeElement === document.querySelector(%s)`, jsString(sel)), focusedJS)
}

// tabTo presses Tab (or Shift+Tab) until the focus is on sel, at most
// max times, checking after each press that the focus is somewhere.
func (b *browser) tabTo(sel string, back bool, max int) {
	b.t.Helper()
	var opts []chromedp.KeyOption
	if back {
		opts = append(opts, chromedp.KeyModifiers(chromedp.ModifierShift))
	}
	var path []string
	for range max {
		b.key(kb.Tab, opts...)
		f := eval[string](b, focusedJS)
		path = append(path, f)
		if f == "body" {
			b.t.Fatalf("%s: Tab left the focus on the page's body (path %s)", b.name, strings.Join(path, " → "))
		}
		if eval[bool](b, fmt.Sprintf(`document.activeElement === document.querySelector(%s)`, jsString(sel))) {
			return
		}
	}
	b.t.Fatalf("%s: %d Tabs did not reach %s (path %s)", b.name, max, sel, strings.Join(path, " → "))
}

// TestKeyboardOnly: a person with a keyboard and no mouse creates a room
// on the home page, joins it, mutes and unmutes (the button and Alt+M),
// stops and starts the camera (Alt+V), chats, opens and closes each side
// panel (Escape and the panel's close button) and the share menu, and
// leaves; after each step the focus is where they expect it, never on the
// page's body. A second member's join and chat (with the chat panel
// closed) are announced in the page's live region, as are the connection
// state and recording.
// micOnJS: the microphone button and the self tile say the microphone is on.
const micOnJS = `(() => { const b = document.querySelector('#btn-mic');
  return b.getAttribute('aria-pressed') === 'false' && b.textContent.includes('Mute') && !b.textContent.includes('Unmute') && document.querySelector('.tile.self').dataset.audioMuted === 'false' })()`

func TestKeyboardOnly(t *testing.T) {
	e := newEnv(t, nil)
	a := e.launch("Ada")
	a.do(20*time.Second, chromedp.Navigate(e.url+"/"))
	a.waitFor(10*time.Second, "the home page", `document.querySelector('#create')`)
	a.focusIs("the name field", "#name")
	a.key("Ada")
	a.tabTo("#create", false, 4)
	a.key(kb.Enter)
	a.waitFor(15*time.Second, "the lobby with camera ready", `location.pathname.startsWith('/r/') && document.querySelector('#join') && `+lobbyReadyJS, `document.body.innerText`)
	room := strings.TrimPrefix(eval[string](a, `location.pathname`), "/r/")
	a.focusIs("the lobby's name field", "#name-input")
	if n := eval[string](a, `document.querySelector('#name-input').value`); n != "Ada" {
		t.Errorf("lobby name %q, want the one typed on the home page", n)
	}
	a.tabTo("#join", false, 4)
	a.key(kb.Enter)
	a.waitFor(15*time.Second, "joined the room", `parleyApp.client && parleyApp.client.state === 'joined'`, `document.body.innerText`)
	a.focusIs("the call's first control", "#btn-mic")
	a.waitFor(10*time.Second, "“Connected” announced", `document.querySelector('#announcer').textContent.includes('Connected')`, `document.querySelector('#announcer').textContent`)

	// Mute with the focused button (Space), unmute with Alt+M.
	a.key(" ")
	a.waitFor(10*time.Second, "muted", `document.querySelector('#btn-mic').getAttribute('aria-pressed') === 'true' && document.querySelector('#btn-mic').textContent.includes('Unmute') && document.querySelector('.tile.self').dataset.audioMuted === 'true'`)
	a.focusIs("the microphone button", "#btn-mic")
	a.key("m", chromedp.KeyModifiers(chromedp.ModifierAlt))
	a.waitFor(10*time.Second, "unmuted by Alt+M", micOnJS)
	// A plain "m" is a letter, not a shortcut (WCAG 2.1.4).
	a.key("m")
	if !eval[bool](a, micOnJS) {
		t.Errorf("a plain m muted the microphone")
	}
	a.key("v", chromedp.KeyModifiers(chromedp.ModifierAlt))
	a.waitFor(10*time.Second, "camera off by Alt+V", `document.querySelector('#btn-cam').getAttribute('aria-pressed') === 'true' && document.querySelector('#btn-cam').textContent.includes('Start video') && document.querySelector('.tile.self').dataset.videoMuted === 'true'`)
	a.key("v", chromedp.KeyModifiers(chromedp.ModifierAlt))
	a.waitFor(10*time.Second, "camera on by Alt+V", `document.querySelector('#btn-cam').getAttribute('aria-pressed') === 'false' && document.querySelector('#btn-cam').textContent.includes('Stop video') && document.querySelector('.tile.self').dataset.videoMuted === 'false'`)
	if k := eval[string](a, `document.querySelector('#btn-mic').getAttribute('aria-keyshortcuts') + ' ' + document.querySelector('#btn-mic').title`); k != "Alt+M Mute (Alt+M)" {
		t.Errorf("microphone button's shortcut and tooltip %q", k)
	}

	// A second member joins: announced.
	bob := e.launch("Bob")
	bob.join(room)
	a.waitFor(15*time.Second, "“Bob joined” announced", `document.querySelector('#announcer').textContent.includes('Bob joined')`, `document.querySelector('#announcer').textContent`)
	bob.waitFor(15*time.Second, "the chat channel to Ada open", `[...parleyApp.client.peers.values()].length === 1 && [...parleyApp.client.peers.values()].every(p => p.channels.chat.readyState === 'open')`)
	bob.click("#btn-chat")
	bob.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "hi Ada"), chromedp.Click(chromedp.CSS("#chat-send")))
	a.waitFor(15*time.Second, "Bob's message announced (chat closed)", `document.querySelector('#announcer').textContent.includes('Bob says: hi Ada')`, `document.querySelector('#announcer').textContent`)

	// Chat: open, type, send with Enter, close with Escape.
	a.tabTo("#btn-chat", false, 8)
	a.key(kb.Enter)
	a.focusIs("the message field", "#chat-input")
	a.key("hello Bob" + kb.Enter)
	bob.waitFor(15*time.Second, "Ada's message", `document.querySelector('#chat-list').textContent.includes('hello Bob')`)
	a.focusIs("the message field after sending", "#chat-input")
	a.key(kb.Escape)
	a.waitFor(10*time.Second, "the chat closed", `document.querySelector('#panel').hidden`)
	a.focusIs("the Chat button", "#btn-chat")

	// Files and settings close with Escape, statistics with its close button.
	for _, p := range []string{"files", "stats", "settings"} {
		a.tabTo("#btn-"+p, false, 4)
		a.key(kb.Enter)
		a.waitFor(10*time.Second, "the "+p+" panel", `document.querySelector('#panel').dataset.panel === '`+p+`' && !document.querySelector('#panel').hidden`)
		a.focusIs("the panel's heading", "#panel h2")
		if p == "stats" {
			a.tabTo("#panel-close", false, 2)
			a.key(kb.Enter)
		} else {
			a.key(kb.Escape)
		}
		a.waitFor(10*time.Second, "the "+p+" panel closed", `document.querySelector('#panel').hidden`)
		a.focusIs("the button that opened it", "#btn-"+p)
	}

	// Recording start and stop are announced.
	a.tabTo("#btn-record", false, 3)
	a.key(kb.Enter)
	a.waitFor(10*time.Second, "recording announced", `document.querySelector('#btn-record').getAttribute('aria-pressed') === 'true' && !document.querySelector('#rec-indicator').hidden && document.querySelector('#announcer').textContent.includes('Recording')`, `document.querySelector('#announcer').textContent`)
	a.key(kb.Enter)
	a.waitFor(10*time.Second, "recording saved announced", `document.querySelector('#btn-record').getAttribute('aria-pressed') === 'false' && document.querySelector('#rec-indicator').hidden && document.querySelector('#announcer').textContent.includes('Recording saved')`, `document.querySelector('#announcer').textContent`)
	a.focusIs("the record button", "#btn-record")

	// The share menu: Escape returns to its button.
	a.tabTo("#btn-share", true, 10)
	a.key(kb.Enter)
	a.waitFor(10*time.Second, "the share menu", `document.querySelector('#share-menu')`)
	a.focusIs("the menu's first item", "#share-screen")
	a.key(kb.Escape)
	a.waitFor(10*time.Second, "the share menu closed", `!document.querySelector('#share-menu')`)
	a.focusIs("the Share button", "#btn-share")

	// Leave: the focus goes to the new page's heading; Bob hears of it.
	a.tabTo("#btn-hangup", false, 12)
	a.key(kb.Enter)
	a.waitFor(10*time.Second, "the page after Leave", `document.querySelector('#notice[data-kind="left"]')`)
	a.focusIs("the heading “You left the call”", "#notice h1")
	bob.waitFor(15*time.Second, "“Ada left” announced", `document.querySelector('#announcer').textContent.includes('Ada left')`, `document.querySelector('#announcer').textContent`)
}
