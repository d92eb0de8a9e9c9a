package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// toneJS reports whether the viewer page hears the studio's 440 Hz tone:
// the loudest bin of its audio track's spectrum is at 440 Hz and loud.
const toneJS = `(async () => {
  const ms = document.querySelector('#video').srcObject, tr = ms && ms.getAudioTracks()[0]; if (!tr) return false;
  if (!window.__tone || window.__tone.tr !== tr) { // (again after a new session)
    const ac = new AudioContext(); await ac.resume();
    const an = ac.createAnalyser(); an.fftSize = 4096;
    ac.createMediaStreamSource(new MediaStream([tr])).connect(an);
    window.__tone = { tr, ac, an, buf: new Float32Array(an.frequencyBinCount) };
  }
  const { ac, an, buf } = window.__tone; an.getFloatFrequencyData(buf);
  let peak = -Infinity, at = 0;
  for (let i = 1; i < buf.length; i++) if (buf[i] > peak) { peak = buf[i]; at = i; }
  window.__toneSeen = [at * ac.sampleRate / an.fftSize, peak];
  return Math.abs(at * ac.sampleRate / an.fftSize - 440) < 2 * ac.sampleRate / an.fftSize && peak > -60;
})()`

// TestRTMPBroadcast: ffmpeg publishes over RTMP (H.264 + AAC); a browser
// on /w/s decodes the picture and hears the tone (AAC became Opus). The
// studio is killed and started again: the same page decodes again,
// without a reload.
func TestRTMPBroadcast(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTMP = "127.0.0.1:0"
	})
	url := fmt.Sprintf("rtmp://%s/live/s", e.srv.RTMPAddr())
	watchAndResume(t, e, func(ctx context.Context) *exec.Cmd { return rtmptest.Studio(ctx, url) },
		"ffmpeg's start, the RTMP library's 2 s track analysis and 1 s of frames")
}

// watchAndResume opens /w/s while studio publishes, checks the picture and
// the tone, kills the studio and starts it again, and checks that the same
// page decodes and hears it again without a reload.
func watchAndResume(t *testing.T, e *env, studio func(context.Context) *exec.Cmd, includes string) {
	t.Helper()
	stop := keepPublishing(t, studio)
	defer func() { stop() }()
	v := e.openViewer("Val", "s")
	v.waitDecoding(30 * time.Second)
	v.waitFor(15*time.Second, "the 440 Hz tone", toneJS, `window.__toneSeen`)

	stop()
	stop = keepPublishing(t, studio)
	began := time.Now()
	n := eval[float64](v, decodedJS)
	// 25 frames (1 s of the studio) more than the old publisher's last
	// frames still buffered in the page: an upper bound of the resume time.
	v.waitFor(30*time.Second, "frames again after the studio came back", `(await `+decodedJS+`) > `+jsonish(n+25))
	t.Logf("25 new frames decoded %s after the studio was restarted (includes %s)", time.Since(began).Round(10*time.Millisecond), includes)
	v.waitFor(10*time.Second, "the tone again", toneJS, `window.__toneSeen`)
}

// keepPublishing runs the studio until stop, starting it again whenever
// it exits (a refused or dropped publish), as an encoder retries.
func keepPublishing(t *testing.T, studio func(context.Context) *exec.Cmd) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := studio(ctx).Run(); err != nil && ctx.Err() == nil {
				t.Logf("ffmpeg: %v; starting it again", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond): // a retry's pace, as an encoder's
			}
		}
	}()
	return func() { cancel(); <-done }
}

// TestRTSPBroadcast: ffmpeg pushes over RTSP (H.264 + AAC, UDP); a
// browser on /w/s decodes the picture and hears the tone.
func TestRTSPBroadcast(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTSP = "127.0.0.1:0"
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := rtmptest.StudioRTSP(ctx, fmt.Sprintf("rtsp://%s/s", e.srv.RTSPAddr()), "udp")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	v := e.openViewer("Val", "s")
	v.waitDecoding(30 * time.Second)
	v.waitFor(15*time.Second, "the 440 Hz tone", toneJS, `window.__toneSeen`)
}

// TestSRTBroadcast: ffmpeg publishes MPEG-TS over SRT (H.264 + AAC); a
// browser on /w/s decodes the picture and hears the tone. ffmpeg is
// killed and started again (retrying while the server still holds the
// vanished publisher's UDP session): the same page decodes again, without
// a reload.
func TestSRTBroadcast(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.SRT = "127.0.0.1:0"
	})
	url := fmt.Sprintf("srt://%s?streamid=publish:s", e.srv.SRTAddr())
	watchAndResume(t, e, func(ctx context.Context) *exec.Cmd { return rtmptest.StudioMPEGTS(ctx, url) },
		"the server noticing the killed publisher: 5 s without SRT packets")
}

// TestSourceNote: an RTMP encoder that makes B-frames goes live, and the
// watch page says why its picture may look wrong, accessibly.
func TestSourceNote(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTMP = "127.0.0.1:0"
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-c:v", "libx264", "-bf", "2", "-g", "25",
		"-f", "flv", fmt.Sprintf("rtmp://%s/live/s", e.srv.RTMPAddr()))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	v := e.openViewer("Val", "s")
	v.waitFor(30*time.Second, "the B-frames note", `(() => { const n = document.getElementById('source-note'); return !n.hidden && /B-frames/.test(n.textContent) })()`,
		`document.getElementById('source-note').outerHTML`)
	if a := a11yViolations(v); a != "" {
		t.Errorf("watch page with a source note: WCAG 2.1 AA violations:\n%s", a)
	}
}
