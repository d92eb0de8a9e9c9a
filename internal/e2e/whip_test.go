package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/parley/parley/pkg/whip"

	"github.com/chromedp/chromedp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/pkg/client"
)

// Media-plane interop with a real browser, without the app's pages: plain
// WHIP/WHEP from page script on one side, pion on the other.

func mediaEnv(t *testing.T) *env {
	return newEnv(t, func(c *config.Config) { c.MediaUDP = "127.0.0.1:0" })
}

// blankPage opens a same-origin page with no app code on it.
func (e *env) blankPage(name string) *browser {
	b := e.launch(name, withSize(640, 480))
	b.do(30*time.Second, chromedp.Navigate(e.url+"/healthz"))
	return b
}

// whipFromPage is a minimal WHIP/WHEP client in page script: offer with
// all candidates, POST, apply the answer.
const whipFromPage = `
window.whip = async (url, pc) => {
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
  const res = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
  if (res.status !== 201) throw new Error(url + ': ' + res.status + ' ' + await res.text());
  await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
  return res.headers.get('Location');
};`

func TestBrowserWHIPToPionWHEP(t *testing.T) {
	e := mediaEnv(t)
	b := e.blankPage("publisher")
	eval[bool](b, whipFromPage+`
(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 320, height: 240, frameRate: 15}});
  const pc = new RTCPeerConnection();
  for (const tr of stream.getTracks()) pc.addTransceiver(tr, {direction: 'sendonly'});
  window.pub = pc;
  await whip('/whip/cam', pc);
  return true;
})()`)
	b.waitFor(15*time.Second, "the publisher connected", `pub.connectionState === 'connected'`, `pub.connectionState`)

	// A pion WHEP viewer must receive a VP8 keyframe it could decode and a
	// steady run of frames after it.
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan vp8Frame, 64)
	view := pionWHEP(t, e.url+"/whep/cam", whip.Options{API: api, Kinds: []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo},
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { collectVP8(tr, frames) }})
	defer view.Close(context.Background())

	deadline := time.After(20 * time.Second)
	var key *vp8Frame
	count := 0
	for count < 30 {
		select {
		case f := <-frames:
			if key == nil && !f.key {
				continue // a decoder starts at a keyframe
			}
			if key == nil {
				key = &f
			}
			count++
		case <-deadline:
			t.Fatalf("pion viewer got %d frames after keyframe %v", count, key)
		}
	}
	if key.width != 320 || key.height != 240 {
		t.Fatalf("keyframe is %dx%d, want 320x240", key.width, key.height)
	}
}

func TestPionWHIPToBrowserWHEP(t *testing.T) {
	e := mediaEnv(t)
	// A pion WHIP publisher sends real VP8 (the bench tool's clip) at 30 fps.
	raw, err := os.ReadFile("testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pion")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pub, err := whip.Publish(ctx, e.url+"/whip/clip", whip.Options{API: api}, track)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(context.Background())
	stop := make(chan struct{})
	defer close(stop)
	go loopIVF(raw, track, stop)

	b := e.blankPage("viewer")
	eval[bool](b, whipFromPage+`
(async () => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  const v = document.createElement('video');
  v.muted = true; v.autoplay = true; document.body.appendChild(v);
  pc.ontrack = ev => { v.srcObject = new MediaStream([ev.track]); };
  window.viewer = pc;
  for (let i = 0; i < 50; i++) {
    try { await whip('/whep/clip', pc); return true; } catch (e) { await new Promise(r => setTimeout(r, 200)); }
  }
  return false;
})()`)
	b.waitFor(20*time.Second, "frames decoded from the pion publisher", `viewer.getStats().then(s => [...s.values()].some(r => r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 30))`,
		`viewer.getStats().then(s => [...s.values()].filter(r => r.type === 'inbound-rtp').map(r => ({f: r.framesDecoded, b: r.bytesReceived})))`)
	if w := eval[int](b, `viewer.getStats().then(s => [...s.values()].find(r => r.type === 'inbound-rtp').frameWidth)`); w <= 0 {
		t.Fatalf("frameWidth %d", w)
	}
}

// pionWHEP plays a WHEP stream with pkg/whip, trying again while the
// stream is not live yet (a browser publisher's tracks are on their way).
func pionWHEP(t *testing.T, url string, o whip.Options) *whip.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	retry := time.NewTicker(200 * time.Millisecond)
	defer retry.Stop()
	for {
		s, err := whip.Play(ctx, url, o)
		var he *whip.HTTPError
		if errors.As(err, &he) && he.Code == "not_live" {
			select {
			case <-retry.C:
				continue
			case <-ctx.Done():
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		return s
	}
}

type vp8Frame struct {
	key           bool
	width, height int
}

// collectVP8 reassembles VP8 frames and reports each with its keyframe
// header, as a decoder would see it.
func collectVP8(tr *webrtc.TrackRemote, out chan<- vp8Frame) {
	var frame []byte
	var pkt codecs.VP8Packet
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		payload, err := pkt.Unmarshal(p.Payload)
		if err != nil {
			continue
		}
		if pkt.S == 1 && pkt.PID == 0 {
			frame = frame[:0]
		}
		frame = append(frame, payload...)
		if !p.Marker || len(frame) < 3 {
			continue
		}
		f := vp8Frame{key: frame[0]&1 == 0}
		if f.key && len(frame) >= 10 && bytes.Equal(frame[3:6], []byte{0x9d, 0x01, 0x2a}) {
			f.width = int(frame[6]) | int(frame[7]&0x3f)<<8
			f.height = int(frame[8]) | int(frame[9]&0x3f)<<8
		}
		select {
		case out <- f:
		default:
		}
	}
}

// loopIVF sends the clip's frames at 30 fps until stop.
func loopIVF(raw []byte, track *webrtc.TrackLocalStaticSample, stop <-chan struct{}) {
	t := time.NewTicker(time.Second / 30)
	defer t.Stop()
	for {
		r, _, err := ivfreader.NewWith(bytes.NewReader(raw))
		if err != nil {
			return
		}
		for {
			frame, _, err := r.ParseNextFrame()
			if err != nil {
				break
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
			track.WriteSample(media.Sample{Data: frame, Duration: time.Second / 30})
		}
	}
}
