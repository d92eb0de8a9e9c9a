package camera_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/camera"
	"github.com/parley/parley/internal/camera/cameratest"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
)

func newSFU(t testing.TB) *sfu.SFU {
	t.Helper()
	m, err := sfu.New(sfu.Config{UDP: "127.0.0.1:0", PublicIP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// events is a Manager whose status changes arrive on a channel.
func events(t *testing.T, cfg camera.Config) (*camera.Manager, chan camera.Status) {
	t.Helper()
	ch := make(chan camera.Status, 1024)
	cfg.OnStatus = func(_ string, st camera.Status) {
		select {
		case ch <- st:
		default: // a test reads the latest ones; an overflowing burst is not needed
		}
	}
	if cfg.SFU == nil {
		cfg.SFU = newSFU(t)
	}
	m := camera.New(cfg)
	t.Cleanup(m.Close)
	return m, ch
}

// waitState waits for a status in state st and returns it.
func waitState(ctx context.Context, t *testing.T, ch chan camera.Status, want camera.State) camera.Status {
	t.Helper()
	for {
		select {
		case st := <-ch:
			if st.State == want {
				return st
			}
		case <-ctx.Done():
			t.Fatalf("no %s status", want)
		}
	}
}

// TestPullFailures: a camera that refuses, one that never answers and one
// that answers garbage each end in the error state with the reason in
// words; the password is in none of them.
func TestPullFailures(t *testing.T) {
	for name, tc := range map[string]struct {
		url    func(testing.TB) string
		reason string
	}{
		"refused": {cameratest.RefusedURL, "connection refused"},
		"silent":  {cameratest.Silent, "timed out"},
		"garbage": {cameratest.Garbage, "connection closed by the camera"},
		"no path": {func(t testing.TB) string { return cameratest.Start(t).URL() }, "404 not found"},
		"mjpeg":   {func(t testing.TB) string { return cameratest.StartMJPEG(t).URL() }, "no supported track (the camera offers M-JPEG)"},
		"wrong password": {func(t testing.TB) string {
			c := cameratest.StartMJPEG(t)
			c.RequireAuth("admin", "the-right-one")
			return c.URL()
		}, "401 unauthorized"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			m, ch := events(t, camera.Config{Timeout: 300 * time.Millisecond, MinBackoff: time.Hour})
			u := strings.Replace(tc.url(t), "rtsp://", "rtsp://admin:s3cret-pw@", 1)
			if err := m.Add("door", config.Stream{Source: u, Transport: "tcp"}, "config"); err != nil {
				t.Fatal(err)
			}
			st := waitState(ctx, t, ch, camera.Error)
			t.Logf("%s: %q", name, st.Error)
			if st.Error == "" || (tc.reason != "" && st.Error != tc.reason) {
				t.Fatalf("reason %q, want %q", st.Error, tc.reason)
			}
			in, _ := m.Get("door")
			if strings.Contains(st.Error, "s3cret") || strings.Contains(in.Source, "s3cret") {
				t.Fatalf("password shown: %q %q", st.Error, in.Source)
			}
		})
	}
}

// TestReconnectsDoNotLeak: 100 failed attempts with a short backoff
// against a refused port, a garbage server and a silent one (each attempt
// timing out), then the stream removed: the goroutine count settles back
// to where it was.
func TestReconnectsDoNotLeak(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, ch := events(t, camera.Config{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Timeout: 30 * time.Millisecond})
	urls := map[string]string{"refused": cameratest.RefusedURL(t), "garbage": cameratest.Garbage(t), "silent": cameratest.Silent(t)}
	base := runtime.NumGoroutine()
	for _, name := range []string{"refused", "garbage", "silent"} {
		u := urls[name]
		if err := m.Add(name, config.Stream{Source: u, Transport: "tcp"}, "api"); err != nil {
			t.Fatal(err)
		}
		for {
			st := waitState(ctx, t, ch, camera.Error)
			if st.Attempts%20 == 0 {
				t.Logf("%s: attempt %d: %s", name, st.Attempts, st.Error)
			}
			if st.Attempts >= 100 {
				break
			}
		}
		if err := m.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	for {
		if n = runtime.NumGoroutine(); n <= base {
			break
		}
		select {
		case <-ctx.Done():
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after 300 attempts, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		case <-time.After(20 * time.Millisecond): // polling the count: no event says "settled"
		}
	}
	t.Logf("%d goroutines, %d before", n, base)
}

// TestPullLive: a camera fed by ffmpeg (H.264 + AAC), asking for a
// password, goes live with both
// tracks in the SFU; its feed stopping puts the stream in error, and the
// feed returning makes it live again.
func TestPullLive(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cam := cameratest.Start(t)
	feed := cam.Feed(ctx)
	if err := feed.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = feed.Process.Kill(); _ = feed.Wait() })
	select {
	case <-cam.Ready():
	case <-ctx.Done():
		t.Fatal("ffmpeg never recorded into the camera")
	}
	s := newSFU(t)
	m, ch := events(t, camera.Config{SFU: s, MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	cam.RequireAuth("admin", "s3cret")
	if err := m.Add("door", config.Stream{Source: strings.Replace(cam.URL(), "rtsp://", "rtsp://admin:s3cret@", 1)}, "config"); err != nil {
		t.Fatal(err)
	}
	st := waitState(ctx, t, ch, camera.Live)
	if st.Tracks != "H.264, AAC→Opus" {
		t.Fatalf("tracks %q", st.Tracks)
	}
	room, ok := s.LookupRoom(sfu.Streams, "door")
	if !ok || room.WaitTracks(ctx, 2) != 2 {
		t.Fatal("tracks not in the SFU")
	}

	_ = feed.Process.Kill()
	_ = feed.Wait()
	st = waitState(ctx, t, ch, camera.Error)
	t.Logf("camera gone: %q", st.Error)
	feed = cam.Feed(ctx)
	if err := feed.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(ctx, t, ch, camera.Live)
}

// TestMaxStreams: past MaxStreams, Add refuses with ErrFull; a removed
// stream frees its place.
func TestMaxStreams(t *testing.T) {
	m, _ := events(t, camera.Config{MaxStreams: 2, MinBackoff: time.Hour, Timeout: 30 * time.Millisecond})
	u := cameratest.RefusedURL(t)
	for _, name := range []string{"a", "b"} {
		if err := m.Add(name, config.Stream{Source: u, Transport: "tcp"}, "api"); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Add("c", config.Stream{Source: u, Transport: "tcp"}, "api"); !errors.Is(err, camera.ErrFull) {
		t.Fatalf("third stream: %v, want ErrFull", err)
	}
	if err := m.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if err := m.Add("c", config.Stream{Source: u, Transport: "tcp"}, "api"); err != nil {
		t.Fatalf("after a removal: %v", err)
	}
}
