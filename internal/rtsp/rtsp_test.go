package rtsp

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/pion/rtp"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
)

func newServer(t testing.TB, cfg Config) *Server {
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
// (AAC) over RTSP in real time (rtmptest.StudioRTSP).
func push(ctx context.Context, t *testing.T, url, transport string) *ffmpeg {
	t.Helper()
	return start(t, rtmptest.StudioRTSP(ctx, url, transport))
}

// ffmpeg is a running ffmpeg or ffprobe; exited is closed when it ends.
type ffmpeg struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func start(t *testing.T, cmd *exec.Cmd) *ffmpeg {
	t.Helper()
	f := &ffmpeg{cmd: cmd, exited: make(chan struct{})}
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
	codecs, err := rtmptest.Probe(ctx, url, "-rtsp_transport", transport)
	if err != nil {
		t.Fatal(err)
	}
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
			if sdp := describe(t, s.Addr().String(), "s"); !strings.Contains(sdp, "sprop-parameter-sets=") {
				t.Fatalf("the description has no SPS/PPS:\n%s", sdp)
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

// describe sends a DESCRIBE and returns the description.
func describe(t *testing.T, addr, stream string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "DESCRIBE rtsp://%s/%s RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n", addr, stream)
	var res base.Response
	if err := res.Unmarshal(bufio.NewReader(c)); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != base.StatusOK {
		t.Fatalf("DESCRIBE: %d %s", res.StatusCode, res.StatusMessage)
	}
	return string(res.Body)
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
// connection, one address holds at most ConnsPerIP connections, a silent
// connection is closed after ReadTimeout, and the server still answers.
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

	quick := newServer(t, Config{ReadTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", quick.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rtmptest.ClosedByServer(t, c, 10*time.Second) // silent: cut at ReadTimeout, not the 60 s idle timeout
}

// TestDurWraps: a PTS days into a stream comes back as its RTP timestamp
// (modulo 2^32, give or take the one tick two roundings lose).
func TestDurWraps(t *testing.T) {
	for _, clock := range []int64{90000, 48000, 8000} {
		for _, pts := range []int64{0, 1, 12345, 1<<32 - 1, 1 << 32, 3 * 24 * 3600 * clock, 1<<40 + 7, -3} {
			d := dur(pts, clock)
			back := uint32(d * time.Duration(clock) / time.Second) // d is under 2^32 ticks: no overflow here
			if diff := uint32(pts) - back; d < 0 || diff > 1 {
				t.Errorf("clock %d, pts %d: %v, back %d, want %d", clock, pts, d, back, uint32(pts))
			}
		}
	}
}

func TestRefuseKeepsOneLine(t *testing.T) {
	if m := refuse(base.StatusForbidden, "a\r\nX-Injected: 1\x7f").res.StatusMessage; m != "Forbidden (aX-Injected: 1)" {
		t.Fatalf("reason phrase %q", m)
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
		if got, given, err := credentials(base.HeaderValue{h}, ""); got != want || !given || err != nil {
			t.Errorf("credentials(%q) = %q, %v, %v", h, got, given, err)
		}
	}
	if _, given, err := credentials(nil, "a=b"); given || err != nil {
		t.Error("no header: credentials given")
	}
	if got, given, _ := credentials(base.HeaderValue{"Basic " + b64([]byte("u:cut"))}, "token=long"); got != "long" || !given {
		t.Errorf("the query's token= does not win over a password: %q", got)
	}
	if _, _, err := credentials(base.HeaderValue{"Digest x"}, ""); err == nil {
		t.Error("Digest accepted")
	}
}

// FuzzRequest: stream names and credentials from any path and
// Authorization header never panic, and a name taken is valid.
func FuzzRequest(f *testing.F) {
	f.Add("/s", "Basic dTp0b2s=", "")
	f.Add("/a/b", "Digest username=\"u\"", "token=x")
	f.Add("", "Basic", "%zz&token")
	f.Fuzz(func(t *testing.T, path, auth, query string) {
		valid := func(s string) bool { return len(s) > 0 && len(s) <= 64 && !strings.ContainsAny(s, "/") }
		if name, err := streamName(path, valid); err == nil && (!valid(name) || "/"+name != path && name != path) {
			t.Fatalf("streamName(%q) = %q", path, name)
		}
		_, _, _ = credentials(base.HeaderValue{auth}, query)
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestPasswordToken: ffmpeg sends the URL's password as Basic auth after
// the 401 challenge, for pushing and for reading; each authorized session
// ends its authorization exactly once.
func TestPasswordToken(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	var mu sync.Mutex
	ends := map[ingest.Action]int{}
	authz := func(_ context.Context, r ingest.Request) (func(), error) {
		want := map[ingest.Action]string{ingest.Publish: "pub", ingest.Read: "read"}[r.Action]
		if r.Token != want || r.Proto != "rtsp" || r.Stream != "s" || !r.Remote.IsLoopback() {
			return nil, fmt.Errorf("%+v refused", r)
		}
		return sync.OnceFunc(func() {
			mu.Lock()
			ends[r.Action]++
			mu.Unlock()
		}), nil
	}
	s := newServer(t, Config{Authorize: authz})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ff := push(ctx, t, fmt.Sprintf("rtsp://cam:pub@%s/s", s.Addr()), "tcp")
	waitLive(ctx, t, s.cfg.SFU, "s", 2)
	if got := probe(ctx, t, fmt.Sprintf("rtsp://viewer:read@%s/s", s.Addr()), "tcp"); !slices.Equal(got, []string{"h264", "opus"}) {
		t.Fatalf("ffprobe: %v", got)
	}
	if _, err := rtmptest.Probe(ctx, fmt.Sprintf("rtsp://viewer:pub@%s/s", s.Addr())); err == nil {
		t.Fatal("read with the publish token")
	}
	_ = ff.cmd.Process.Kill()
	<-ff.exited
	tick := time.NewTicker(10 * time.Millisecond) // sessions end in the library's goroutines: nothing to wait on
	defer tick.Stop()
	for {
		mu.Lock()
		pub, read := ends[ingest.Publish], ends[ingest.Read]
		mu.Unlock()
		if pub == 1 && read >= 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ends: %d publish, %d read", pub, read)
		case <-tick.C:
		}
	}
}

// TestPushCodecs: ffmpeg pushes each codec pair the server takes, the
// stream goes live with the tracks WebRTC viewers get, and ffprobe reads
// them back over RTSP; a push of only MJPEG is refused (415) and never
// goes live.
func TestPushCodecs(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	in := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=f=440"}
	for name, c := range map[string]struct {
		args       []string
		want, read []string
	}{
		"VP8 and Opus": {[]string{"-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k", "-c:a", "libopus"},
			[]string{"audio/opus", "video/VP8"}, []string{"opus", "vp8"}},
		"H.264 and G.711u": {[]string{"-c:v", "libx264", "-tune", "zerolatency", "-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1"},
			[]string{"audio/PCMU", "video/H264"}, []string{"h264", "pcm_mulaw"}},
		"G.711a alone": {[]string{"-vn", "-c:a", "pcm_alaw", "-ar", "8000", "-ac", "1"},
			[]string{"audio/PCMA"}, []string{"pcm_alaw"}},
		"H.265 alone": {[]string{"-an", "-c:v", "libx265", "-x265-params", "log-level=error:bframes=0:keyint=25"},
			[]string{"video/H265"}, []string{"hevc"}},
		"VP9 alone": {[]string{"-an", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-b:v", "300k", "-strict", "experimental"},
			[]string{"video/VP9"}, []string{"vp9"}},
	} {
		t.Run(name, func(t *testing.T) {
			s := newServer(t, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append(append(append([]string(nil), in...), c.args...), "-f", "rtsp", "-rtsp_transport", "tcp", fmt.Sprintf("rtsp://%s/s", s.Addr()))
			start(t, exec.CommandContext(ctx, "ffmpeg", args...))
			room := waitLive(ctx, t, s.cfg.SFU, "s", len(c.want))
			var got []string
			for _, ti := range room.Tracks() {
				got = append(got, ti.Codec)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Fatalf("tracks %v, want %v", got, c.want)
			}
			if got := probe(ctx, t, fmt.Sprintf("rtsp://%s/s", s.Addr()), "tcp"); !slices.Equal(got, c.read) {
				t.Fatalf("ffprobe: %v, want %v", got, c.read)
			}
		})
	}
	t.Run("MJPEG refused", func(t *testing.T) {
		s := newServer(t, Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args := append(append([]string(nil), in[:len(in)-4]...), "-c:v", "mjpeg", "-f", "rtsp", "-rtsp_transport", "tcp", fmt.Sprintf("rtsp://%s/s", s.Addr()))
		start(t, exec.CommandContext(ctx, "ffmpeg", args...)).refused(ctx, t, "MJPEG")
		if _, ok := s.cfg.SFU.LookupRoom(sfu.Streams, "s"); ok {
			t.Fatal("an MJPEG push went live")
		}
	})
}

// FuzzParamSink: any payload sequence is scanned for an SPS and a PPS
// without panicking, and what is taken has the right NAL unit type.
func FuzzParamSink(f *testing.F) {
	f.Add([]byte{0x67, 0x42, 0xc0, 0x1f}, []byte{0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce})
	f.Add([]byte{0x18, 0x00}, []byte{0x18, 0xff, 0xff, 0x67})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		k := &paramSink{done: make(chan struct{})}
		for _, p := range [][]byte{a, b} {
			_, _ = k.WriteRTP(&rtp.Header{Timestamp: 1}, p)
		}
		if len(k.sps) > 0 && k.sps[0]&0x1f != 7 || len(k.pps) > 0 && k.pps[0]&0x1f != 8 {
			t.Fatalf("sps %x pps %x", k.sps, k.pps)
		}
	})
}

// TestMaxSessions: with room for one session, a publisher takes it and a
// reader's SETUP gets 503 (ffprobe fails).
func TestMaxSessions(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	s := newServer(t, Config{MaxSessions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := fmt.Sprintf("rtsp://%s/s", s.Addr())
	push(ctx, t, url, "tcp")
	waitLive(ctx, t, s.cfg.SFU, "s", 2)
	if _, err := rtmptest.Probe(ctx, url, "-rtsp_transport", "tcp"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a reader beyond MaxSessions: %v", err)
	}
}
