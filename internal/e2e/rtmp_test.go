package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// toneJS reports whether the viewer page hears the studio's 440 Hz tone:
// the loudest bin of its audio track's spectrum is at 440 Hz and loud.
const toneJS = `(async () => {
  const tr = parleyWatch.media && parleyWatch.media.getAudioTracks()[0]; if (!tr) return false;
  if (!window.__tone) {
    const ac = new AudioContext(); await ac.resume();
    const an = ac.createAnalyser(); an.fftSize = 4096;
    ac.createMediaStreamSource(new MediaStream([tr])).connect(an);
    window.__tone = { ac, an, buf: new Float32Array(an.frequencyBinCount) };
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := fmt.Sprintf("rtmp://%s/live/s", e.srv.RTMPAddr())
	start := func() func() {
		cmd := rtmptest.Studio(ctx, url)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	stop := start()
	defer func() { stop() }()
	v := e.openViewer("Val", "s")
	v.waitDecoding(30 * time.Second)
	v.waitFor(15*time.Second, "the 440 Hz tone", toneJS, `window.__toneSeen`)

	stop()
	stop = start()
	began := time.Now()
	n := eval[float64](v, decodedJS)
	// 25 frames (1 s of the studio) more than the old publisher's last
	// frames still buffered in the page: an upper bound of the resume time.
	v.waitFor(20*time.Second, "frames again after the studio came back", `(await `+decodedJS+`) > `+jsonish(n+25))
	t.Logf("25 new frames decoded %s after the new ffmpeg started (includes ffmpeg's start, the RTMP library's 2 s track analysis and 1 s of frames)",
		time.Since(began).Round(10*time.Millisecond))
	v.waitFor(10*time.Second, "the tone again", toneJS, `window.__toneSeen`)
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
