package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/bench/fanout"
	"github.com/parley/parley/internal/config"
)

// newBroadcastEnv is a server with the SFU (and so WHIP/WHEP) on loopback.
func newBroadcastEnv(t *testing.T) *env {
	return newEnv(t, func(c *config.Config) {
		c.MediaUDP = "127.0.0.1:0"
		c.MediaTCP = "off"
	})
}

// openPublisher loads /b/<stream> and waits until the chosen source is ready.
func (e *env) openPublisher(name, stream, query string, opt ...func(*browserOpts)) *browser {
	e.t.Helper()
	b := e.launch(name, opt...)
	b.do(30*time.Second, chromedp.Navigate(e.url+"/b/"+stream+"?"+query))
	b.waitFor(20*time.Second, "the publisher page ready", `window.parleyApp && !document.querySelector('#go-live').disabled`, `document.body.innerText`)
	return b
}

// openViewer loads /w/<stream>.
func (e *env) openViewer(name, stream string, opt ...func(*browserOpts)) *browser {
	e.t.Helper()
	b := e.launch(name, opt...)
	b.do(30*time.Second, chromedp.Navigate(e.url+"/w/"+stream+"?name="+name))
	b.waitFor(15*time.Second, "the viewer page", `window.parleyApp && document.body.dataset.state`, `document.body.innerText`)
	return b
}

// decodedJS is how many video frames the viewer page's <video> has
// presented (its playback quality: what a person sees).
const decodedJS = `(() => { const q = document.querySelector('#video').getVideoPlaybackQuality(); return q.totalVideoFrames - q.droppedVideoFrames })()`

// readoutKbpsJS is the bitrate the watch page's readout shows, in kbit/s (0 without one).
const readoutKbpsJS = `(() => { const m = /([\d.]+) (kbit|Mbit)\/s/.exec(document.querySelector('#readout').textContent); return m ? parseFloat(m[1]) * (m[2] === 'Mbit' ? 1000 : 1) : 0 })()`

// waitDecoding waits until a viewer page decodes video frames, and keeps doing so.
func (b *browser) waitDecoding(timeout time.Duration) {
	b.t.Helper()
	b.waitFor(timeout, "the stream playing", `document.body.dataset.state === 'live' && `+decodedJS+` > 10`,
		`(async () => { const s = parleyApp.session, o = [document.body.dataset.state, s && s.pc.connectionState];
		  if (s) (await s.pc.getStats()).forEach(x => { if (x.type === 'inbound-rtp') o.push([x.kind, x.packetsReceived, x.framesDecoded, x.frameWidth, x.pliCount].join(' ')) });
		  return o })()`)
	n := eval[float64](b, decodedJS)
	b.waitFor(10*time.Second, "more frames", decodedJS+` > `+jsonish(n))
}

func streamStatus(t *testing.T, e *env, name string) (st struct {
	Live    bool `json:"live"`
	Tracks  int  `json:"tracks"`
	Viewers int  `json:"viewers"`
}) {
	t.Helper()
	r, err := http.Get(e.url + "/api/streams/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// 4. A browser publishes on /b/x; two browsers on /w/x (opened before it
// goes live) start by themselves and decode it; the publisher reads 2
// viewers; chat works once the publisher allows it; stopping shows
// "stream ended" on the viewers. The second viewer's browser blocks
// autoplay with sound: it plays muted with an Unmute button, and has sound
// after the click.
func TestBroadcast(t *testing.T) {
	e := newBroadcastEnv(t)
	pub := e.openPublisher("Host", "x", "res=720&fps=15&name=Host")
	v1 := e.openViewer("Val", "x")
	v2 := e.openViewer("Wes", "x", func(o *browserOpts) { o.flags["autoplay-policy"] = "document-user-activation-required" })
	for _, v := range []*browser{v1, v2} {
		v.waitFor(5*time.Second, "the waiting message", `document.body.dataset.state === 'waiting' && document.querySelector('#overlay-title').textContent.includes('not live')`, `document.body.innerText`)
	}
	if eval[string](pub, `document.querySelector('#viewer-link').value`) != e.url+"/w/x" {
		t.Errorf("viewer link %q", eval[string](pub, `document.querySelector('#viewer-link').value`))
	}
	if u := eval[string](pub, `document.querySelector('#whip-url').value`); u != e.url+"/whip/x" {
		t.Errorf("WHIP URL %q", u)
	}

	pub.click("#go-live")
	pub.waitFor(15*time.Second, "the publisher live", `document.body.dataset.state === 'live'`, `document.querySelector('#status').textContent`)
	v1.waitDecoding(25 * time.Second)
	v2.waitFor(25*time.Second, "playing muted with an Unmute button (sound blocked)", `document.body.dataset.state === 'live' && !document.querySelector('#play').hidden &&
	  document.querySelector('#play').getAttribute('aria-label') === 'Unmute' && document.querySelector('#video').muted && !document.querySelector('#video').paused`,
		`[document.body.dataset.state, document.querySelector('#overlay').innerText, document.querySelector('#play').outerHTML]`)
	v2.click("#play")
	v2.waitFor(5*time.Second, "sound after the click", `document.querySelector('#play').hidden && !document.querySelector('#video').paused && !document.querySelector('#video').muted`)
	v2.waitDecoding(10 * time.Second)
	pub.waitFor(5*time.Second, "2 viewers on the publisher page", `document.querySelector('#viewers').dataset.count === '2' && document.querySelector('#viewers').textContent.includes('2 viewers')`,
		`document.querySelector('#viewers').textContent`)
	if st := streamStatus(t, e, "x"); !st.Live || st.Viewers != 2 {
		t.Errorf("stream status %+v", st)
	}
	// The pages follow the server's status events; none asks for the status.
	for _, b := range []*browser{pub, v1, v2} {
		if n := eval[int](b, `performance.getEntriesByType('resource').filter(r => /\/api\/streams\/x$/.test(new URL(r.name).pathname)).length`); n != 0 {
			t.Errorf("%s fetched /api/streams/x %d times (it should follow /api/streams/x/events)", b.name, n)
		}
	}
	// The publisher sends simulcast; the viewer's readout has numbers.
	pub.waitFor(20*time.Second, "3 simulcast layers sent", `/ · 3 simulcast layers$/.test(document.querySelector('#send-stats').textContent)`, `document.querySelector('#send-stats').textContent`)
	v1.waitFor(5*time.Second, "a latency/bitrate readout", `/kbit\/s|Mbit\/s/.test(document.querySelector('#readout').textContent) && `+readoutKbpsJS+` > 0`, `document.querySelector('#readout').textContent`)
	v1.waitFor(5*time.Second, "the WebRTC badge with its latency", `document.querySelector('#path').textContent.includes('WebRTC') && / ms| s/.test(document.querySelector('#path-latency').textContent)`,
		`document.querySelector('#path').outerHTML`)
	// HLS is on by default (/api/ingest prefer_h264): the page publishes H.264.
	if c := eval[string](pub, `(async () => { const r = await parleyApp.session.pc.getStats(); let id = ''; r.forEach(s => { if (s.type === 'outbound-rtp' && s.kind === 'video' && s.codecId) id = s.codecId; });
	  return id && r.get(id) ? r.get(id).mimeType : 'none' })()`); c != "video/H264" {
		t.Errorf("publisher's video codec %s, want video/H264 (HLS is on)", c)
	}

	// Chat: hidden until the publisher allows it.
	if !eval[bool](v1, `document.querySelector('#chat').hidden`) {
		t.Error("chat shown before the publisher enabled it")
	}
	pub.click("#chat-enabled")
	for _, v := range []*browser{v1, v2} {
		v.waitFor(5*time.Second, "the chat shown", `!document.querySelector('#chat').hidden && !document.querySelector('#chat-input').disabled`)
	}
	v1.do(30*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "great stream"), chromedp.Click(chromedp.CSS("#chat-send")))
	hasMsg := func(name, text string) string {
		return `[...document.querySelectorAll('#chat-list .msg')].some(m => m.querySelector('.msg-name').textContent === ` + jsString(name) + ` && m.querySelector('.msg-text').textContent === ` + jsString(text) + `)`
	}
	v2.waitFor(5*time.Second, "Val's message at Wes", hasMsg("Val", "great stream"))
	pub.waitFor(5*time.Second, "Val's message at the host", hasMsg("Val", "great stream"))
	pub.do(30*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "thanks!"), chromedp.Click(chromedp.CSS("#chat-send")))
	v1.waitFor(5*time.Second, "the host's message", hasMsg("Host", "thanks!")+` && document.querySelector('#chat-list .msg.host')`)

	// 7. What the pages look like, live with chat.
	pub.do(30*time.Second, chromedp.EmulateViewport(1280, 800))
	v1.do(30*time.Second, chromedp.EmulateViewport(1280, 800))
	eval[bool](pub, `(window.scrollTo(0, 0), true)`)
	pub.shot("broadcast-publisher.png", 1280, 800)
	v1.shot("broadcast-viewer.png", 1280, 800)

	pub.click("#stop")
	pub.waitFor(5*time.Second, "the publisher off air", `document.body.dataset.state === 'off'`)
	for _, v := range []*browser{v1, v2} {
		v.waitFor(10*time.Second, "“stream ended”", `document.body.dataset.state === 'ended' && !document.querySelector('#overlay').hidden && document.querySelector('#overlay-title').textContent === 'Stream ended'`,
			`[document.body.dataset.state, document.querySelector('#overlay').innerText]`)
	}
	if st := streamStatus(t, e, "x"); st.Live {
		t.Errorf("still live after stop: %+v", st)
	}
	// It comes back: the viewer page starts by itself again.
	pub.click("#go-live")
	v1.waitDecoding(25 * time.Second)
	if s := eval[string](v1, `document.querySelector('#air').textContent`); !strings.Contains(s, "Live") {
		t.Errorf("viewer pill %q", s)
	}
	// Screen + camera while live: the same session, the viewer keeps decoding.
	loc := eval[string](pub, `parleyApp.session.location`)
	pub.click("#src-pip")
	pub.waitFor(10*time.Second, "the composite on air", `document.querySelector('#src-pip').checked && document.querySelector('#preview-box').dataset.sharing === 'true' && parleyApp.session && !!parleyApp.session.video &&
	  parleyApp.session.video.track === document.querySelector('#preview').srcObject.getVideoTracks()[0]`)
	if l := eval[string](pub, `parleyApp.session.location`); l != loc {
		t.Errorf("switching to screen + camera started a new session")
	}
	v1.waitDecoding(10 * time.Second)
	// Microphone only: a new session with audio alone; the viewer follows.
	pub.click("#src-mic")
	pub.waitFor(15*time.Second, "live with the microphone only", `document.body.dataset.state === 'live' && !parleyApp.session.video && !document.querySelector('#audio-only').hidden && document.querySelector('#preview').hidden`)
	v1.waitFor(20*time.Second, "audio only at the viewer", `document.body.dataset.state === 'live' && !document.querySelector('#audio-only').hidden && document.querySelector('#video').srcObject && document.querySelector('#video').srcObject.getAudioTracks().length === 1 && `+readoutKbpsJS+` > 0`,
		`[document.body.dataset.state, document.querySelector('#video').srcObject && document.querySelector('#video').srcObject.getTracks().map(t => t.kind)]`)
}

// plainWHIPJS publishes the fake camera and microphone with nothing but
// RTCPeerConnection and fetch, as any WHIP tool would (no Parley script).
const plainWHIPJS = `(async () => {
  const ms = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360, frameRate: 15 } });
  const pc = new RTCPeerConnection();
  for (const t of ms.getTracks()) pc.addTransceiver(t, { direction: 'sendonly' });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); setTimeout(r, 2000); });
  const res = await fetch('/whip/' + STREAM, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
  if (res.status !== 201) throw new Error('WHIP ' + res.status + ' ' + await res.text());
  window.plainLocation = res.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  window.plainPC = pc;
  return true;
})()`

// 5. Interop: a pion WHIP publisher (parley bench fanout) and a page that
// publishes with plain WHIP are watched on /w/<stream> like the /b/ page.
func TestBroadcastInterop(t *testing.T) {
	e := newBroadcastEnv(t)
	// The browser must decode the picture: a real clip, not the tool's
	// synthetic frames.
	clip, err := os.ReadFile("testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := fanout.Run(ctx, fanout.Options{URL: e.url, OpsURL: e.srv.OpsURL(), Stream: "bench", Viewers: 1, Warmup: time.Second, Duration: 60 * time.Second, Video: clip})
		done <- err
	}()
	v := e.openViewer("Val", "bench")
	v.waitDecoding(30 * time.Second)
	if w := eval[float64](v, `document.querySelector('#video').videoWidth`); w <= 0 {
		t.Errorf("no picture size from the bench publisher")
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("bench fanout: %v", err)
	}
	v.waitFor(15*time.Second, "“stream ended” after the bench publisher left", `document.body.dataset.state === 'ended'`, `document.body.dataset.state`)

	// A page publishing with plain WHIP (no parley.js); the viewer opened
	// first and starts by itself.
	p := e.launch("Plain")
	p.do(20*time.Second, chromedp.Navigate(e.url+"/healthz"))
	v2 := e.openViewer("Wes", "plain")
	v2.waitFor(5*time.Second, "waiting", `document.body.dataset.state === 'waiting'`)
	if !eval[bool](p, strings.ReplaceAll(plainWHIPJS, "STREAM", jsString("plain"))) {
		t.Fatal("plain WHIP publish failed")
	}
	v2.waitDecoding(30 * time.Second)
	if st := streamStatus(t, e, "plain"); !st.Live || st.Viewers != 1 || st.Tracks != 2 {
		t.Errorf("stream status %+v", st)
	}
	// Ending the WHIP session the standard way (DELETE) ends the stream.
	eval[bool](p, `fetch(plainLocation, { method: 'DELETE' }).then(r => r.ok)`)
	v2.waitFor(10*time.Second, "“stream ended”", `document.body.dataset.state === 'ended'`, `document.body.dataset.state`)
}
