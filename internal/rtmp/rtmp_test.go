package rtmp

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/protocol"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
)

func newServer(t testing.TB, cfg Config) *Server {
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

// TestMaxConns: past MaxConns in all, new connections are closed at once.
func TestMaxConns(t *testing.T) {
	s := newServer(t, Config{MaxConns: 1, HandshakeTimeout: 5 * time.Second})
	first, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	rtmptest.ClosedByServer(t, second, 3*time.Second)
	if st := s.Stats(); st.Refused != 1 {
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

// FuzzConn feeds raw bytes to a connection's handler, after a plain
// handshake when the first byte is odd (so the chunk and command parsers
// are reached): it must end (the client closes) without a panic.
func FuzzConn(f *testing.F) {
	f.Add([]byte{1, 0x02, 0, 0, 0, 0, 0, 0x1e, 0x14, 1, 0, 0, 0})
	f.Add([]byte{0, 3})
	f.Add(append([]byte{1}, bytes.Repeat([]byte{0x03, 0, 0, 0, 0, 0, 0x10, 0x14}, 8)...))
	s := newServer(f, Config{HandshakeTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	f.Fuzz(func(t *testing.T, b []byte) {
		client, server := net.Pipe()
		in := b
		if len(b) > 0 && b[0]&1 == 1 {
			in = append(append([]byte{3}, make([]byte, 2*1536)...), b[1:]...) // C0, C1, C2
		}
		go func() {
			_, _ = client.Write(in)
			_ = client.Close()
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = s.handle(server)
		_ = server.Close()
	})
}

// TestBFramesNoted: a publisher whose encoder makes B-frames goes live,
// and the stream's status says why its picture may look wrong.
func TestBFramesNoted(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	reg := ingest.NewRegistry()
	s := newServer(t, Config{Registry: reg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-c:v", "libx264", "-bf", "2", "-g", "25",
		"-f", "flv", "rtmp://"+s.Addr().String()+"/live/b")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	tick := time.NewTicker(20 * time.Millisecond) // the note has no event of its own to wait on
	defer tick.Stop()
	for {
		if si, ok := reg.Source("b"); ok && len(si.Notes) > 0 {
			if si.Proto != "rtmp" || !strings.Contains(si.Notes[0], "B-frames") {
				t.Fatalf("source %+v", si)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("no B-frame note")
		case <-tick.C:
		}
	}
}
