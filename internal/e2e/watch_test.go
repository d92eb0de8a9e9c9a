package e2e

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/bench/fanout"
)

// publishClip publishes testdata/video.ivf on stream with a pion WHIP
// publisher (parley bench fanout, one pion viewer) until the returned
// stop is called.
func (e *env) publishClip(stream string) (stop func()) {
	e.t.Helper()
	clip, err := os.ReadFile("testdata/video.ivf")
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := fanout.Run(ctx, fanout.Options{URL: e.url, OpsURL: e.srv.OpsURL(), Stream: stream, Viewers: 1, Warmup: time.Second, Duration: 5 * time.Minute, Video: clip})
		done <- err
	}()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			e.t.Logf("bench fanout: %v", err)
		}
	}
	e.t.Cleanup(stop)
	return stop
}

// playerFitsJS is true when the video and the player's controls are inside
// the viewport and the video is not clipped by the player.
const playerFitsJS = `(() => {
  const v = document.querySelector('#video').getBoundingClientRect(), p = document.querySelector('#player').getBoundingClientRect(),
    bar = document.querySelector('#bar').getBoundingClientRect();
  return v.height > 100 && v.top >= 0 && v.bottom <= innerHeight && bar.bottom <= innerHeight &&
    v.top >= p.top - 0.5 && v.bottom <= p.bottom + 0.5 && v.left >= p.left - 0.5 && v.right <= p.right + 0.5 })()`

const playerRectsJS = `['#video', '#player', '#bar'].map(s => { const r = document.querySelector(s).getBoundingClientRect(); return s + ' ' + [r.top, r.bottom, r.left, r.right].map(Math.round).join(',') }).concat(['viewport ' + innerWidth + 'x' + innerHeight])`

// TestWatchPlayer: a watch link opened in a browser that does not let
// pages play sound by themselves starts playing muted, without a click,
// with a big Unmute button that turns the sound on; at 1280×657 the whole
// video and its controls are on screen; when the stream ends the readout
// says so instead of freezing, and it runs again for the next publisher.
func TestWatchPlayer(t *testing.T) {
	e := newBroadcastEnv(t)
	stop := e.publishClip("clip")
	v := e.openViewer("Val", "clip", func(o *browserOpts) { o.flags["autoplay-policy"] = "document-user-activation-required" })
	v.do(30*time.Second, chromedp.EmulateViewport(1280, 657))
	if vp := eval[string](v, `innerWidth + 'x' + innerHeight`); vp != "1280x657" {
		t.Fatalf("viewport %s, want 1280x657", vp)
	}
	v.waitDecoding(30 * time.Second)
	if !eval[bool](v, `document.querySelector('#video').muted && !document.querySelector('#video').paused`) {
		t.Error("the video is not playing muted by itself")
	}
	v.waitFor(5*time.Second, "the Unmute button", `(() => { const b = document.querySelector('#play'); return !b.hidden && b.getAttribute('aria-label') === 'Unmute' && b.textContent.trim() === 'Unmute' && b.offsetWidth > 0 })()`,
		`document.querySelector('#play').outerHTML`)
	v.waitFor(5*time.Second, "the video and its controls inside the 1280×657 viewport", playerFitsJS, playerRectsJS)

	v.click("#play")
	v.waitFor(5*time.Second, "sound on after the click", `!document.querySelector('#video').muted && !document.querySelector('#video').paused && document.querySelector('#play').hidden &&
	  document.querySelector('#mute').getAttribute('aria-label') === 'Mute'`, `[document.querySelector('#video').muted, document.querySelector('#play').outerHTML]`)
	v.waitFor(10*time.Second, "a bitrate readout", `/kbit\/s|Mbit\/s/.test(document.querySelector('#readout').textContent)`, `document.querySelector('#readout').textContent`)

	stop()
	v.waitFor(15*time.Second, "the readout saying the stream ended", `document.body.dataset.state === 'ended' && document.querySelector('#readout').textContent === 'Stream ended' &&
	  document.querySelector('#path-latency').textContent === '' && `+readoutKbpsJS+` === 0`,
		`[document.body.dataset.state, document.querySelector('#readout').textContent, document.querySelector('#path-latency').textContent]`)

	e.publishClip("clip")
	v.waitDecoding(30 * time.Second)
	v.waitFor(10*time.Second, "the readout running again", `/kbit\/s|Mbit\/s/.test(document.querySelector('#readout').textContent) && `+readoutKbpsJS+` > 0`,
		`document.querySelector('#readout').textContent`)
	v.waitFor(5*time.Second, "the video still inside the viewport", playerFitsJS, playerRectsJS)
}
