package rtsp

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
)

func newServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Listen, cfg.SFU = "127.0.0.1:0", rtmptest.SFU(t)
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// push starts ffmpeg publishing a test picture (H.264) and a 440 Hz tone
// (AAC) over RTSP in real time; transport is "udp", "tcp", or "" for
// ffmpeg's default (UDP, then TCP when the server answers 461).
func push(ctx context.Context, t *testing.T, url, transport string) *ffmpeg {
	t.Helper()
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440",
		"-c:v", "libx264", "-tune", "zerolatency", "-g", "25", "-c:a", "aac", "-f", "rtsp"}
	if transport != "" {
		args = append(args, "-rtsp_transport", transport)
	}
	return start(t, exec.CommandContext(ctx, "ffmpeg", append(args, url)...))
}

// ffmpeg is a running ffmpeg or ffprobe; exited is closed when it ends.
type ffmpeg struct {
	cmd    *exec.Cmd
	out    strings.Builder
	exited chan struct{}
	err    error
}

func start(t *testing.T, cmd *exec.Cmd) *ffmpeg {
	t.Helper()
	f := &ffmpeg{cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout = &f.out
	cmd.Stderr = &logWriter{t: t, name: cmd.Args[0]}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		f.err = cmd.Wait()
		close(f.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-f.exited
	})
	return f
}

// refused waits for ffmpeg to give up with an error.
func (f *ffmpeg) refused(ctx context.Context, t *testing.T, what string) {
	t.Helper()
	select {
	case <-f.exited:
		if f.err == nil {
			t.Fatalf("%s: ffmpeg succeeded", what)
		}
	case <-ctx.Done():
		t.Fatalf("%s: not refused", what)
	}
}

type logWriter struct {
	t    *testing.T
	name string
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.t.Logf("%s: %s", l.name, p)
	return len(p), nil
}

// waitLive waits for the stream's room to have n tracks.
func waitLive(ctx context.Context, t *testing.T, m *sfu.SFU, name string, n int) *sfu.Room {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond) // the room appears with its first track: nothing to wait on before
	defer tick.Stop()
	for {
		if r, ok := m.LookupRoom(sfu.Streams, name); ok {
			if got := r.WaitTracks(ctx, n); got < n {
				t.Fatalf("stream %s: %d tracks, want %d", name, got, n)
			}
			return r
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stream %s never went live", name)
		case <-tick.C:
		}
	}
}

// probe runs ffprobe on url and returns the codecs it finds.
func probe(ctx context.Context, t *testing.T, url, transport string) []string {
	t.Helper()
	f := start(t, exec.CommandContext(ctx, "ffprobe", "-hide_banner", "-loglevel", "error", "-rtsp_transport", transport,
		"-show_entries", "stream=codec_name", "-of", "json", url))
	select {
	case <-f.exited:
	case <-ctx.Done():
		t.Fatal("ffprobe did not finish")
	}
	if f.err != nil {
		t.Fatalf("ffprobe %s: %v", url, f.err)
	}
	var out struct {
		Streams []struct {
			Codec string `json:"codec_name"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(f.out.String()), &out); err != nil {
		t.Fatalf("ffprobe output %q: %v", f.out.String(), err)
	}
	var codecs []string
	for _, s := range out.Streams {
		codecs = append(codecs, s.Codec)
	}
	slices.Sort(codecs)
	return codecs
}

// TestPushAndRead: ffmpeg pushes H.264 and AAC over UDP and over TCP;
// the stream goes live with H.264 and Opus (transcoded) tracks, ffprobe
// reads both back over UDP and TCP, a second publisher gets 503.
func TestPushAndRead(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s := newServer(t, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			url := fmt.Sprintf("rtsp://%s/s", s.Addr())
			push(ctx, t, url, transport)
			room := waitLive(ctx, t, s.cfg.SFU, "s", 2)
			var codecs []string
			for _, ti := range room.Tracks() {
				codecs = append(codecs, ti.Codec)
			}
			slices.Sort(codecs)
			if want := []string{"audio/opus", "video/H264"}; !slices.Equal(codecs, want) {
				t.Fatalf("tracks %v, want %v", codecs, want)
			}
			for _, tr := range []string{"udp", "tcp"} {
				if got, want := probe(ctx, t, url, tr), []string{"h264", "opus"}; !slices.Equal(got, want) {
					t.Fatalf("ffprobe over %s: %v, want %v", tr, got, want)
				}
			}
			push(ctx, t, url, transport).refused(ctx, t, "second publisher")
			if st := s.Stats(); st.Publishers != 1 || st.Rejected < 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestUDPOff: without UDP, ffmpeg's UDP attempt gets 461 and it moves to
// TCP by itself.
func TestUDPOff(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	s := newServer(t, Config{UDP: "off"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	push(ctx, t, fmt.Sprintf("rtsp://%s/s", s.Addr()), "")
	waitLive(ctx, t, s.cfg.SFU, "s", 2)
	if s.UDPAddr() != nil {
		t.Fatal("UDP is on")
	}
}

// request sends one raw RTSP request and reads the status line.
func request(t *testing.T, c net.Conn, br *bufio.Reader, req string) string {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", req, err)
	}
	for { // skip the headers (and any body: none here)
		h, err := br.ReadString('\n')
		if err != nil || h == "\r\n" {
			break
		}
	}
	return strings.TrimSpace(line)
}

// TestAuth: with an Authorizer, a request without credentials gets 401
// with a Basic challenge, a token that does not grant gets 403, the
// right token passes (and then 404: nothing is live); end is called once
// per authorized request that ends.
func TestAuth(t *testing.T) {
	authz := func(_ context.Context, r ingest.Request) (func(), error) {
		switch {
		case r.Token == "":
			return nil, errors.New("no token")
		case r.Token != "good":
			return nil, fmt.Errorf("token %q: insufficient scope", r.Token)
		}
		return func() {}, nil
	}
	s := newServer(t, Config{Authorize: authz})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	url := fmt.Sprintf("rtsp://%s/s", s.Addr())
	if got := request(t, c, br, "DESCRIBE "+url+" RTSP/1.0\r\nCSeq: 1\r\n\r\n"); !strings.HasPrefix(got, "RTSP/1.0 401") {
		t.Fatalf("no credentials: %q", got)
	}
	basic := func(pass string) string {
		return "Authorization: Basic " + b64([]byte("u:"+pass)) + "\r\n"
	}
	if got := request(t, c, br, "DESCRIBE "+url+" RTSP/1.0\r\nCSeq: 2\r\n"+basic("good")+"\r\n"); !strings.HasPrefix(got, "RTSP/1.0 404") {
		t.Fatalf("good token, nothing live: %q", got)
	}
	if got := request(t, c, br, "DESCRIBE "+url+" RTSP/1.0\r\nCSeq: 3\r\n"+basic("bad")+"\r\n"); !strings.HasPrefix(got, "RTSP/1.0 401") {
		t.Fatalf("bad token: %q", got)
	}
	if got := request(t, c, br, "DESCRIBE rtsp://h/a/b RTSP/1.0\r\nCSeq: 4\r\n"+basic("good")+"\r\n"); !strings.HasPrefix(got, "RTSP/1.0 400") {
		t.Fatalf("bad path: %q", got)
	}
}

// TestMalformedAndLimits: garbage and a malformed request close their
// connection, one address holds at most ConnsPerIP connections, and the
// server still answers.
func TestMalformedAndLimits(t *testing.T) {
	s := newServer(t, Config{ConnsPerIP: 2})
	for _, junk := range []string{
		"\x00\x01\x02garbage\r\n\r\n",
		"DESCRIBE rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\nContent-Length: -5\r\n\r\n",
		"OPTIONS rtsp://h/s RTSP/9.9\r\nCSeq: 1\r\n\r\n",
	} {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, junk)
		t.Logf("sent %q", junk)
		rtmptest.ClosedByServer(t, c, 10*time.Second)
		c.Close()
	}
	conns := rtmptest.ConnLimit(t, s.Addr().String(), 2)
	_ = conns[0].SetDeadline(time.Now().Add(10 * time.Second))
	got := request(t, conns[0], bufio.NewReader(conns[0]), "OPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\n\r\n")
	if got != "RTSP/1.0 200 OK" {
		t.Fatalf("OPTIONS after the junk: %q", got)
	}
	if st := s.Stats(); st.Refused < 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStreamName(t *testing.T) {
	valid := func(s string) bool { return s != "" && !strings.ContainsAny(s, "/?# ") && len(s) <= 64 }
	for path, want := range map[string]string{"/s": "s", "/cam.1": "cam.1", "/": "", "": "", "/a/b": "", "/" + strings.Repeat("x", 65): ""} {
		got, err := streamName(path, valid)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("streamName(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
	for h, want := range map[string]string{"Basic " + b64([]byte("u:tok")): "tok", "Basic " + b64([]byte(":tok")): "tok"} {
		if got, given, err := credentials(base.HeaderValue{h}); got != want || !given || err != nil {
			t.Errorf("credentials(%q) = %q, %v, %v", h, got, given, err)
		}
	}
	if _, given, err := credentials(nil); given || err != nil {
		t.Error("no header: credentials given")
	}
	if _, _, err := credentials(base.HeaderValue{"Digest x"}); err == nil {
		t.Error("Digest accepted")
	}
}

// FuzzRequest: stream names and credentials from any path and
// Authorization header never panic, and a name taken is valid.
func FuzzRequest(f *testing.F) {
	f.Add("/s", "Basic dTp0b2s=")
	f.Add("/a/b", "Digest username=\"u\"")
	f.Add("", "Basic")
	f.Fuzz(func(t *testing.T, path, auth string) {
		valid := func(s string) bool { return len(s) > 0 && len(s) <= 64 && !strings.ContainsAny(s, "/") }
		if name, err := streamName(path, valid); err == nil && (!valid(name) || "/"+name != path && name != path) {
			t.Fatalf("streamName(%q) = %q", path, name)
		}
		_, _, _ = credentials(base.HeaderValue{auth})
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
