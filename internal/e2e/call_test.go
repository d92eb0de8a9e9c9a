package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/config"
)

// 1. Two browsers join a room: each decodes the other's video and receives audio.
func TestTwoPeersVideoAndAudio(t *testing.T) {
	e := newEnv(t, nil)
	a := e.launch("Alice")
	b := e.launch("Bob")
	a.join("duo")
	b.join("duo")
	a.waitMedia(15*time.Second, "Bob")
	b.waitMedia(15*time.Second, "Alice")
	for _, br := range []*browser{a, b} {
		br.waitFor(5*time.Second, "one remote tile showing video", `document.querySelectorAll('.tile.remote[data-has-video="true"]').length === 1`)
	}
	a.waitFor(10*time.Second, "Bob's name on the tile", tileJS("Bob")+` && `+tileJS("Bob")+`.textContent.includes('Bob')`)
}

// 2. Three browsers: each shows two remote tiles with frames decoding.
func TestThreePeersMesh(t *testing.T) {
	e := newEnv(t, nil)
	names := []string{"Ana", "Ben", "Cy"}
	var bs []*browser
	for _, n := range names {
		b := e.launch(n)
		b.join("trio")
		bs = append(bs, b)
	}
	for i, b := range bs {
		var others []string
		for j, n := range names {
			if j != i {
				others = append(others, n)
			}
		}
		b.waitMedia(20*time.Second, others...)
		b.waitFor(5*time.Second, "two remote tiles with video", `document.querySelectorAll('.tile.remote[data-has-video="true"]').length === 2`,
			`[...document.querySelectorAll('.tile')].map(t => t.dataset)`)
	}
}

// 3. Chat: a message typed in one browser appears in the others with the sender's name.
func TestChat(t *testing.T) {
	e := newEnv(t, nil)
	a, b, c := e.launch("Alice"), e.launch("Bob"), e.launch("Carol")
	for _, x := range []*browser{a, b, c} {
		x.join("chat")
	}
	for _, x := range []*browser{a, b, c} {
		x.waitFor(15*time.Second, "chat channels open", `[...parleyApp.client.peers.values()].length === 2 && [...parleyApp.client.peers.values()].every(p => p.channels.chat.readyState === 'open')`)
	}
	a.click("#btn-chat")
	a.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "Hello from Alice ✓"), chromedp.Click(chromedp.CSS("#chat-send")))
	for _, x := range []*browser{b, c} {
		x.waitFor(10*time.Second, "the unread badge", `!document.querySelector('#unread').hidden && document.querySelector('#unread').textContent === '1'`)
		x.click("#btn-chat")
		x.waitFor(10*time.Second, "Alice's message with her name",
			`[...document.querySelectorAll('#chat-list .msg')].some(m => m.querySelector('.msg-name').textContent === 'Alice' && m.querySelector('.msg-text').textContent === 'Hello from Alice ✓')`,
			`document.querySelector('#chat-list').innerText`)
		x.waitFor(10*time.Second, "the badge cleared", `document.querySelector('#unread').hidden`)
	}
	a.waitFor(10*time.Second, "own message shown", `document.querySelector('#chat-list .msg.mine .msg-text').textContent === 'Hello from Alice ✓'`)
}

// 5. Mute camera: the peer's tile shows muted (told over the control
// channel, not guessed from missing frames; the delay is logged, < 10 ms on
// a quiet machine); unmute restores frames.
func TestMuteCamera(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	a.join("mute")
	b.join("mute")
	b.waitMedia(15*time.Second, "Alice")
	a.waitFor(5*time.Second, "control channel open", `[...parleyApp.client.peers.values()].every(p => p.channels.control.readyState === 'open')`)
	a.click("#btn-cam")
	d := b.waitFor(10*time.Second, "Alice's tile muted", tileJS("Alice")+`.dataset.videoMuted === 'true'`)
	t.Logf("camera mute shown after %v", d)
	b.waitFor(10*time.Second, "the avatar instead of video", `getComputedStyle(`+tileJS("Alice")+`.querySelector('.avatar')).display !== 'none'`)
	a.click("#btn-mic")
	b.waitFor(10*time.Second, "Alice's microphone muted icon", tileJS("Alice")+`.dataset.audioMuted === 'true' && getComputedStyle(`+tileJS("Alice")+`.querySelector('.mic-off')).display !== 'none'`)
	a.click("#btn-cam")
	b.waitFor(10*time.Second, "Alice's tile unmuted", tileJS("Alice")+`.dataset.videoMuted === 'false'`)
	b.waitMedia(5*time.Second, "Alice")
}

// 6. Hang up: the other side's tile is gone (the delay is logged).
func TestHangUp(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	a.join("bye")
	b.join("bye")
	b.waitMedia(15*time.Second, "Alice")
	a.click("#btn-hangup")
	d := b.waitFor(10*time.Second, "Alice's tile removed", `!`+tileJS("Alice"))
	t.Logf("tile removed %v after hang-up", d)
	a.waitFor(10*time.Second, "the left-call notice", `document.querySelector('#notice[data-kind="left"]')`)
}

// 7. Bitrate cap 200 kbps: the sender's outbound video bitrate settles below ~250 kbps.
func TestBitrateCap(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	a.join("cap")
	b.join("cap")
	b.waitMedia(15*time.Second, "Alice")
	// The video bitrate to Bob over the next 30 frames Alice encodes
	// (the stats' own clock, no sleeping).
	rate := func() float64 {
		x := a.inbound()["Bob"]
		a.waitFor(20*time.Second, "30 more frames encoded", `(async () => (await `+inboundJS+`).Bob.outVideoFrames >= `+jsonish(x.OutVideoFrames+30)+`)()`)
		y := a.inbound()["Bob"]
		return (y.OutVideoBytes - x.OutVideoBytes) * 8 / (y.OutVideoAt - x.OutVideoAt) // bits per ms = kbit/s
	}
	// Let the bandwidth estimate ramp up first, so that the cap has something
	// to cut. Chromium starts at 300 kbps and probes upwards after 15-20 s;
	// 60 s only bounds an estimate that never grows.
	for start := time.Now(); ; {
		r := rate()
		t.Logf("uncapped video out: %.0f kbps", r)
		if r > 400 {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("uncapped video never exceeded 400 kbps (last %.0f)", r)
		}
	}
	a.click("#btn-settings")
	a.waitFor(5*time.Second, "the bitrate selector", `document.querySelector('#bitrate-select')`)
	a.selectOption("#bitrate-select", "200")
	a.waitFor(10*time.Second, "maxBitrate set on the sender", `[...parleyApp.client.peers.values()].every(p => p.pc.getSenders().find(s => s.track && s.track.kind === 'video').getParameters().encodings[0].maxBitrate === 200000)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := rate()
		t.Logf("capped video out: %.0f kbps", r)
		if r < 250 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("video bitrate stayed at %.0f kbps with a 200 kbps cap", r)
		}
	}
	b.waitMedia(5*time.Second, "Alice") // still flowing
}

// 8. Relay-only: the call connects through the embedded TURN and the stats panel says "relay".
func TestRelayOnly(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	a.join("relay", "relay=1")
	b.join("relay", "relay=1")
	a.waitMedia(20*time.Second, "Bob")
	b.waitMedia(20*time.Second, "Alice")
	in := a.inbound()["Bob"]
	if in.LocalCand != "relay" {
		t.Fatalf("selected local candidate is %q, want relay", in.LocalCand)
	}
	a.click("#btn-stats")
	a.waitFor(5*time.Second, `the stats panel saying "relay"`, `document.querySelector('.stat-card .path') && document.querySelector('.stat-card .path').textContent.startsWith('relay')`,
		`document.querySelector('#panel').innerText`)
}

// 9. Room full: the third browser in a capacity-2 room sees "room is full".
func TestRoomFull(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Rooms = map[string]config.RoomConfig{"two": {Capacity: 2}} })
	a, b, c := e.launch("Alice"), e.launch("Bob"), e.launch("Carol")
	a.join("two")
	b.join("two")
	c.open("two", "")
	c.click("#join")
	c.waitFor(5*time.Second, "the room-full message", `document.querySelector('#notice[data-kind="full"]') && /room is full/i.test(document.querySelector('#notice').innerText)`, `document.body.innerText`)
	a.waitFor(10*time.Second, "still two people", `parleyApp.client.peers.size === 1`)
}

// 10. Switching the camera mid-call does not drop the peer's video for more than 1 s
// and does not renegotiate.
func TestDeviceSwitch(t *testing.T) {
	e := newEnv(t, nil)
	a := e.launch("Alice", func(o *browserOpts) { o.flags["use-fake-device-for-media-stream"] = "device-count=3" })
	b := e.launch("Bob")
	a.join("switch")
	b.join("switch")
	b.waitMedia(15*time.Second, "Alice")
	// Bob watches Alice's decoded frames every 50 ms and records the longest stall.
	eval[bool](b, `(() => {
	  const p = [...parleyApp.client.peers.values()][0];
	  window.watch = {maxGap: 0, last: performance.now(), frames: 0};
	  window.watch.timer = setInterval(async () => {
	    const r = await p.pc.getStats(); let f = 0;
	    r.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') f += s.framesDecoded || 0; });
	    const now = performance.now();
	    if (f > window.watch.frames) { window.watch.frames = f; window.watch.last = now; }
	    window.watch.maxGap = Math.max(window.watch.maxGap, now - window.watch.last);
	  }, 50);
	  return true; })()`)
	sdpBefore := a.inbound()["Bob"].SDP
	// The self view shows what the camera gives (its <video>'s track); the
	// microphone's track is what the connection to Bob sends.
	const camJS = `document.querySelector('.tile.self video').srcObject.getVideoTracks()[0]`
	const micJS = `[...parleyApp.client.peers.values()][0].pc.getSenders().find(s => s.track && s.track.kind === 'audio').track`
	trackBefore := eval[string](a, camJS+`.id`)
	a.click("#btn-settings")
	a.waitFor(5*time.Second, "the camera selector", `document.querySelector('#cam-select') && document.querySelector('#res-select')`)
	// Chromium's fake_device_1 is a 16-bit depth camera that WebRTC cannot
	// encode; fake_device_2 is an ordinary (MJPEG) camera.
	next := eval[string](a, `([...document.querySelector('#cam-select').options].find(o => o.text === 'fake_device_2') || {value: ''}).value`)
	if next != "" {
		a.selectOption("#cam-select", next)
	} else {
		t.Logf("no second fake camera; switching resolution instead (a new camera track all the same)")
		a.selectOption("#res-select", "360")
	}
	before := eval[string](a, camJS+`.label`)
	a.waitFor(5*time.Second, "a new camera track", camJS+`.id !== `+jsString(trackBefore))
	t.Logf("switched camera %s → %s", before, eval[string](a, camJS+`.label`))
	// Bob decodes a good run of frames from the new camera (a stall shows
	// as a gap either way; the watcher keeps measuring until then).
	framesAtSwitch := eval[float64](b, `window.watch.frames`)
	b.waitFor(15*time.Second, "30 more frames from Alice after the switch", fmt.Sprintf(`window.watch.frames > %v`, framesAtSwitch+30), `window.watch`)
	gap := eval[float64](b, `window.watch.maxGap`)
	t.Logf("longest gap in Alice's decoded frames at Bob: %.0f ms", gap)
	if gap > 1000 {
		t.Fatalf("video stalled for %.0f ms while switching camera", gap)
	}
	b.waitMedia(5*time.Second, "Alice")

	// Microphone too: another input, same connection, audio keeps flowing.
	micBefore := eval[string](a, micJS+`.id`)
	next = eval[string](a, `(() => { const s = document.querySelector('#mic-select'); return [...s.options].map(o => o.value).find(v => v !== s.value && v !== `+micJS+`.getSettings().deviceId) || '' })()`)
	if next == "" {
		t.Fatal("no second fake microphone to switch to")
	}
	a.selectOption("#mic-select", next)
	a.waitFor(5*time.Second, "a new microphone track on the sender", `(() => { const mic = `+micJS+`; return mic.id !== `+jsString(micBefore)+` && mic.getSettings().deviceId === `+jsString(next)+` && document.querySelector('#mic-select').value === `+jsString(next)+` })()`)
	b.waitMedia(5*time.Second, "Alice")
	after := a.inbound()["Bob"]
	if re, x, y := renegotiated(sdpBefore, after.SDP); re || after.State != "connected" {
		t.Fatalf("device switch renegotiated (%q became %q) or dropped the call (state %s)", x, y, after.State)
	}
}
