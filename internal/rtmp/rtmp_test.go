package rtmp

import (
	"context"
	"net/url"
	"os/exec"
	"testing"
	"time"

	"github.com/parley/parley/pkg/protocol"

	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
)

func newServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Listen, cfg.SFU = "127.0.0.1:0", rtmptest.SFU(t)
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestLimits: a client silent after connecting is cut at the handshake
// timeout, and one address holds at most ConnsPerIP connections.
func TestLimits(t *testing.T) {
	s := newServer(t, Config{ConnsPerIP: 2, HandshakeTimeout: 200 * time.Millisecond})
	conns := rtmptest.ConnLimit(t, s.Addr().String(), 2)
	for _, c := range conns { // silent: closed at the handshake timeout
		rtmptest.ClosedByServer(t, c, 5*time.Second)
	}
	if st := s.Stats(); st.Refused < 1 || st.Accepted < 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestParsePath(t *testing.T) {
	for raw, want := range map[string]string{
		"rtmp://h/live/s":           "s",
		"rtmp://h/live/s?token=abc": "s",
		"rtmp://h/other/s":          "",
		"rtmp://h/live/":            "",
		"rtmp://h/live/a/b":         "",
		"rtmp://h/live/%20x":        "",
	} {
		u, _ := url.Parse(raw)
		got, tok, err := parsePath(u, protocol.ValidRoom)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("%s: %q %v, want %q", raw, got, err, want)
		}
		if want != "" && raw != "rtmp://h/live/s" && tok != "abc" {
			t.Errorf("%s: token %q", raw, tok)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	f.Add("/live/s", "token=x")
	f.Fuzz(func(t *testing.T, path, query string) {
		s, _, err := parsePath(&url.URL{Path: path, RawQuery: query}, protocol.ValidRoom)
		if err == nil && !protocol.ValidRoom(s) {
			t.Fatalf("accepted %q", s)
		}
	})
}

// TestNoFFmpegForAAC: without ffmpeg for the transcoder, an AAC publisher
// still goes live (video), and the stream is counted as without audio.
func TestNoFFmpegForAAC(t *testing.T) {
	rtmptest.NeedFFmpeg(t) // the publisher is ffmpeg
	s := newServer(t, Config{FFmpeg: "/nonexistent/ffmpeg"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := rtmptest.Studio(ctx, "rtmp://"+s.Addr().String()+"/live/s")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	tick := time.NewTicker(10 * time.Millisecond) // stats have no change event
	defer tick.Stop()
	for {
		if st := s.Stats(); st.Publishers == 1 {
			if st.AudioUnavailable != 1 {
				t.Fatalf("stats %+v: want the stream counted as without audio", st)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the publisher never went live: %+v", s.Stats())
		case <-tick.C:
		}
	}
	room, ok := s.cfg.SFU.LookupRoom(sfu.Streams, "s")
	if !ok || len(room.Tracks()) != 2 {
		t.Fatal("want the video and the (silent) audio track published")
	}
}

// TestLongPublish: a publisher sending well past the handshake deadline,
// at a high rate, stays connected. (ffmpeg sets no acknowledgement window,
// so this does not reach the acknowledgement writes the read loop's
// deadline also covers.)
func TestLongPublish(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	s := newServer(t, Config{HandshakeTimeout: 3 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// 6 s at a constant 10 Mbit/s: about 7.5 MB.
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "6",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
		"-b:v", "10M", "-minrate", "10M", "-maxrate", "10M", "-bufsize", "2M", "-x264-params", "nal-hrd=cbr",
		"-f", "flv", "rtmp://"+s.Addr().String()+"/live/long")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the publisher was cut off: %v: %s", err, out)
	}
	if st := s.Stats(); st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
}
