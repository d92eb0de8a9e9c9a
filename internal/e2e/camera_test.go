package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/camera/cameratest"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// TestCameraWatchPage: an on-demand IP camera (the stand-in, fed by
// ffmpeg) starts when a browser opens /w/door, which decodes it and hears
// the tone; the camera's feed dies and the page says "Camera offline since
// HH:MM — <reason>" in its status overlay; the feed returns and the same
// page plays again without a reload.
func TestCameraWatchPage(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cam := cameratest.Start(t)
	feed := func() func() {
		cmd := cam.Feed(ctx)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-cam.Ready():
		case <-time.After(20 * time.Second):
			t.Fatal("ffmpeg never recorded into the camera")
		}
		return func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	stop := feed()
	defer func() { stop() }()
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.DataDir = t.TempDir()
		c.Streams = map[string]config.Stream{"door": {Source: strings.Replace(cam.URL(), "rtsp://", "rtsp://admin:s3cret@", 1), Transport: "tcp", OnDemand: true}}
	})
	v := e.openViewer("Val", "door")
	v.waitDecoding(30 * time.Second)
	v.waitFor(15*time.Second, "the 440 Hz tone", toneJS, `window.__toneSeen`)

	stop()
	v.waitFor(20*time.Second, "the camera-offline message",
		`/^Camera offline since \d\d?:\d\d[^—]* — connection closed by the camera$/.test(document.getElementById('overlay-title').textContent) && document.getElementById('overlay').getAttribute('aria-live') === 'polite'`,
		`document.getElementById('overlay-title').textContent`)
	if body := eval[string](v, `document.body.innerText`); strings.Contains(body, "s3cret") {
		t.Fatalf("the page shows the camera's password: %s", body)
	}
	stop = feed()
	v.waitDecoding(40 * time.Second)
}
