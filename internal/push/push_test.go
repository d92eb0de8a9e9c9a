package push

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/rtmp"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/srt"
	"github.com/parley/parley/internal/tap"
)

// media is a few seconds of H.264 (x264) and AAC (ffmpeg's encoder), as
// a tap reader delivers them: tracks, and frames in PTS order.
type media struct {
	tracks []tap.Track
	frames []tap.Frame
	length time.Duration
}

var (
	mediaOnce sync.Once
	testMedia media
	mediaErr  error
)

func loadMedia(t *testing.T) media {
	t.Helper()
	rtmptest.NeedFFmpeg(t)
	mediaOnce.Do(func() { testMedia, mediaErr = makeMedia(t) })
	if mediaErr != nil {
		t.Fatal(mediaErr)
	}
	return testMedia
}

func makeMedia(t *testing.T) (media, error) {
	aus := rtmptest.X264Frames(t, 100) // 4 s at 25 fps, a keyframe a second
	var sps, pps []byte
	for _, n := range aus[0] {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	if sps == nil || pps == nil {
		return media{}, errors.New("x264 gave no SPS/PPS")
	}
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
		"-t", "4", "-ac", "2", "-c:a", "aac", "-f", "adts", "pipe:1").Output()
	if err != nil {
		return media{}, fmt.Errorf("ffmpeg aac: %w", err)
	}
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(out); err != nil {
		return media{}, fmt.Errorf("adts: %w", err)
	}
	asc, err := (&mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 2}).Marshal()
	if err != nil {
		return media{}, err
	}
	m := media{tracks: []tap.Track{
		{Kind: "video", Codec: "H264", ClockRate: 90000, Params: [][]byte{sps, pps}},
		{Kind: "audio", Codec: "AAC", ClockRate: 48000, Channels: 2, Params: [][]byte{asc}},
	}, length: 4 * time.Second}
	vi, ai := 0, 0
	for vi < len(aus) || ai < len(pkts) {
		vpts := time.Duration(vi) * 40 * time.Millisecond
		apts := time.Duration(ai) * 1024 * time.Second / 48000
		if vi < len(aus) && (ai >= len(pkts) || vpts <= apts) {
			m.frames = append(m.frames, tap.Frame{Track: 0, PTS: vpts, Key: h264.IsRandomAccess(aus[vi]), AU: aus[vi]})
			vi++
		} else {
			m.frames = append(m.frames, tap.Frame{Track: 1, PTS: apts, Key: true, AU: [][]byte{pkts[ai].AU}})
			ai++
		}
	}
	return m, nil
}

// fakeReader plays media in real time, looping, until closed.
type fakeReader struct {
	m      media
	start  time.Time
	i      int
	closed chan struct{}
	once   sync.Once
}

func (m media) open() *fakeReader {
	return &fakeReader{m: m, start: time.Now(), closed: make(chan struct{})}
}

func (r *fakeReader) Tracks() []tap.Track { return r.m.tracks }

func (r *fakeReader) Read(ctx context.Context) (tap.Frame, error) {
	loop, n := r.i/len(r.m.frames), r.i%len(r.m.frames)
	f := r.m.frames[n]
	f.PTS += time.Duration(loop) * r.m.length
	t := time.NewTimer(time.Until(r.start.Add(f.PTS))) // real-time pacing
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return tap.Frame{}, ctx.Err()
	case <-r.closed:
		return tap.Frame{}, io.EOF
	}
	r.i++
	return f, nil
}

func (r *fakeReader) Close() { r.once.Do(func() { close(r.closed) }) }

// statuses collects status changes for a test to wait on.
type statuses struct {
	ch chan Status
}

func newStatuses() *statuses { return &statuses{ch: make(chan Status, 1024)} }

func (s *statuses) on(st Status) {
	select {
	case s.ch <- st:
	default:
	}
}

// wait waits for a status that satisfies ok.
func (s *statuses) wait(ctx context.Context, t *testing.T, what string, ok func(Status) bool) Status {
	t.Helper()
	for {
		select {
		case st := <-s.ch:
			if ok(st) {
				return st
			}
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func state(want State) func(Status) bool { return func(st Status) bool { return st.State == want } }

// destination is a Parley RTMP ingest with its SFU.
func destination(t *testing.T, m *sfu.SFU, addr string) *rtmp.Server {
	t.Helper()
	s, err := rtmp.Listen(rtmp.Config{Listen: addr, SFU: m, Claim: ingest.LocalClaimer()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testManager(t *testing.T, open func(context.Context, string) (Reader, error), st *statuses) *Manager {
	t.Helper()
	m := New(Config{Open: open, MinBackoff: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		Poll: 50 * time.Millisecond, Timeout: 5 * time.Second, OnStatus: st.on})
	t.Cleanup(m.Close)
	return m
}

// TestRTMPPush: a stream pushed to a Parley RTMP ingest goes live there
// with H.264 and audio; the destination restarting, the push backs off
// and resumes on its own.
func TestRTMPPush(t *testing.T) {
	md := loadMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sf := rtmptest.SFU(t)
	dst := destination(t, sf, "127.0.0.1:0")
	addr := dst.Addr().String()
	st := newStatuses()
	m := testManager(t, func(context.Context, string) (Reader, error) { return md.open(), nil }, st)
	if _, err := m.Add("src", "rtmp://"+addr+"/live/dst?token=s3cret", "api"); err != nil {
		t.Fatal(err)
	}
	live := st.wait(ctx, t, "live", state(Live))
	if live.Tracks != "H264, AAC" || strings.Contains(live.URL, "s3cret") {
		t.Fatalf("status %+v", live)
	}
	room := waitRoom(ctx, t, sf, "dst")
	if n := room.WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks at the destination", n)
	}

	// The destination restarts on the same address.
	dst.Close()
	back := st.wait(ctx, t, "backoff", state(Backoff))
	t.Logf("while the destination is down: %s", back.Error)
	destination(t, sf, addr)
	again := st.wait(ctx, t, "live again", state(Live))
	if again.Reconnects < 1 || again.BytesSent == 0 {
		t.Fatalf("status %+v", again)
	}
	if n := waitRoom(ctx, t, sf, "dst").WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks at the destination after its restart", n)
	}
	if all := m.All(); len(all) != 1 || all[0].State != Live {
		t.Fatalf("All: %+v", all)
	}
}

func waitRoom(ctx context.Context, t *testing.T, m *sfu.SFU, name string) *sfu.Room {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond) // the room appears with its first track: no event before
	defer tick.Stop()
	for {
		if r, ok := m.LookupRoom(sfu.Streams, name); ok {
			return r
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stream %s never went live", name)
		case <-tick.C:
		}
	}
}

// TestRefused: a closed port and a server refusing the publish back off,
// and their status says why, without the stream key.
func TestRefused(t *testing.T) {
	md := loadMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	dst := destination(t, rtmptest.SFU(t), "127.0.0.1:0")
	st := newStatuses()
	m := testManager(t, func(context.Context, string) (Reader, error) { return md.open(), nil }, st)
	for url, want := range map[string]string{
		"rtmp://" + closed + "/live/key1":                    "connection refused",
		"rtmp://" + dst.Addr().String() + "/wrongapp/s3cret": "refused by the destination: NetStream.Publish.BadName",
	} {
		added, err := m.Add("src", url, "api")
		if err != nil {
			t.Fatal(err)
		}
		got := st.wait(ctx, t, want, func(s Status) bool { return s.ID == added.ID && s.State == Backoff })
		if !strings.HasPrefix(got.Error, want) || strings.Contains(got.Error+got.URL, "s3cret") {
			t.Errorf("%s: status %+v, want error %q", url, got, want)
		}
		// It keeps trying.
		st.wait(ctx, t, "a retry", func(s Status) bool { return s.ID == added.ID && s.State == Connecting })
	}
}

// TestWaitsForStream: a push of a stream that is not live waits, and
// starts when the stream does; when it ends, the push waits again.
func TestWaitsForStream(t *testing.T) {
	md := loadMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := destination(t, rtmptest.SFU(t), "127.0.0.1:0")
	var mu sync.Mutex
	var cur *fakeReader
	st := newStatuses()
	m := testManager(t, func(context.Context, string) (Reader, error) {
		mu.Lock()
		defer mu.Unlock()
		if cur == nil {
			return nil, tap.ErrNotLive
		}
		return cur, nil
	}, st)
	if _, err := m.Add("src", "rtmp://"+dst.Addr().String()+"/live/dst", "config"); err != nil {
		t.Fatal(err)
	}
	st.wait(ctx, t, "waiting", state(Waiting))
	mu.Lock()
	cur = md.open()
	mu.Unlock()
	st.wait(ctx, t, "live", state(Live))
	mu.Lock()
	cur.Close() // the stream's publisher goes: Read gives io.EOF
	cur = nil
	mu.Unlock()
	st.wait(ctx, t, "waiting again", state(Waiting))
	if err := m.Remove("src", ID("rtmp://"+dst.Addr().String()+"/live/dst"), "api"); !errors.Is(err, ErrFromConfig) {
		t.Fatalf("removing a config push through the API: %v", err)
	}
}

// TestLimits: duplicates, and destinations past the caps, are refused.
func TestLimits(t *testing.T) {
	m := New(Config{Open: func(context.Context, string) (Reader, error) { return nil, tap.ErrNotLive }, MaxPerStream: 2, MaxTotal: 3})
	defer m.Close()
	add := func(stream, url string) error { _, err := m.Add(stream, url, "api"); return err }
	if err := add("a", "rtmp://h/app/1"); err != nil {
		t.Fatal(err)
	}
	if err := add("a", "rtmp://h/app/1"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := add("a", "srt://h:9000?streamid=x"); err != nil {
		t.Fatal(err)
	}
	if err := add("a", "rtmp://h/app/3"); !errors.Is(err, ErrFull) {
		t.Fatalf("per stream: %v", err)
	}
	if err := add("b", "rtmp://h/app/4"); err != nil {
		t.Fatal(err)
	}
	if err := add("c", "rtmp://h/app/5"); !errors.Is(err, ErrFull) {
		t.Fatalf("total: %v", err)
	}
	if err := m.Remove("a", ID("rtmp://h/app/1"), "api"); err != nil {
		t.Fatal(err)
	}
	if got := m.List("a"); len(got) != 1 || got[0].URL != "srt://h:9000?streamid=xxxxx" {
		t.Fatalf("List: %+v", got)
	}
}

// TestSRTPush: a stream pushed over SRT as MPEG-TS goes live on a Parley
// SRT ingest with H.264 and audio, and ffprobe listening in SRT listener
// mode reads H.264 and AAC from it.
func TestSRTPush(t *testing.T) {
	md := loadMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sf := rtmptest.SFU(t)
	dst, err := srt.Listen(srt.Config{Listen: "127.0.0.1:0", SFU: sf, Claim: ingest.LocalClaimer()})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	st := newStatuses()
	m := testManager(t, func(context.Context, string) (Reader, error) { return md.open(), nil }, st)
	if _, err := m.Add("src", "srt://"+dst.Addr().String()+"?streamid=publish:dst", "api"); err != nil {
		t.Fatal(err)
	}
	live := st.wait(ctx, t, "live", state(Live))
	if live.Tracks != "H264, AAC" {
		t.Fatalf("status %+v", live)
	}
	if n := waitRoom(ctx, t, sf, "dst").WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks at the destination", n)
	}

	// A listener that rejects the caller (a streamid it does not take).
	bad, err := m.Add("src", "srt://"+dst.Addr().String()+"?streamid=publish:no%2Fsuch%2Fname", "api")
	if err != nil {
		t.Fatal(err)
	}
	got := st.wait(ctx, t, "refused", func(s Status) bool { return s.ID == bad.ID && s.State == Backoff })
	if got.Error != "refused by the destination: SRT 1400 bad request (streamid)" || strings.Contains(got.URL, "publish") {
		t.Fatalf("status %+v", got)
	}
	t.Logf("refused: %q", got.Error)

	// ffprobe as an SRT listener on a free port; the push retries until it listens.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	if _, err := m.Add("src", fmt.Sprintf("srt://127.0.0.1:%d", port), "api"); err != nil {
		t.Fatal(err)
	}
	codecs, err := rtmptest.Probe(ctx, fmt.Sprintf("srt://127.0.0.1:%d?mode=listener", port))
	if err != nil {
		for len(st.ch) > 0 {
			t.Log(<-st.ch)
		}
		t.Fatal(err)
	}
	if strings.Join(codecs, ",") != "aac,h264" {
		t.Fatalf("ffprobe sees %v", codecs)
	}
}

// TestRTMPPushH265: H.265 goes as enhanced RTMP; Parley's RTMP ingest
// takes it as an H.265 track.
func TestRTMPPushH265(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	aus, vps, sps, pps := rtmptest.X265Frames(t, 50)
	md := media{tracks: []tap.Track{{Kind: "video", Codec: "H265", ClockRate: 90000, Params: [][]byte{vps, sps, pps}}}, length: 2 * time.Second}
	for i, au := range aus {
		md.frames = append(md.frames, tap.Frame{PTS: time.Duration(i) * 40 * time.Millisecond, Key: i%25 == 0, AU: au})
	}
	sf := rtmptest.SFU(t)
	dst := destination(t, sf, "127.0.0.1:0")
	st := newStatuses()
	m := testManager(t, func(context.Context, string) (Reader, error) { return md.open(), nil }, st)
	if _, err := m.Add("src", "rtmp://"+dst.Addr().String()+"/live/hevc", "api"); err != nil {
		t.Fatal(err)
	}
	if live := st.wait(ctx, t, "live", state(Live)); live.Tracks != "H265" {
		t.Fatalf("status %+v", live)
	}
	room := waitRoom(ctx, t, sf, "hevc")
	if n := room.WaitTracks(ctx, 1); n != 1 || !strings.EqualFold(room.Tracks()[0].Codec, "video/H265") {
		t.Fatalf("destination tracks %+v", room.Tracks())
	}
}

// TestRTMPSPush: rtmps:// is RTMP over TLS with the certificate checked:
// a destination whose certificate the roots trust gets the stream; one
// they do not is refused and backs off.
func TestRTMPSPush(t *testing.T) {
	md := loadMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sf := rtmptest.SFU(t)
	dst := destination(t, sf, "127.0.0.1:0")
	// httptest's certificate for 127.0.0.1, borrowed for a TLS front.
	hs := httptest.NewTLSServer(nil)
	cert, roots := hs.TLS.Certificates[0], x509.NewCertPool()
	roots.AddCert(hs.Certificate())
	hs.Close()
	front := tlsFront(t, cert, dst.Addr().String())

	st := newStatuses()
	m := New(Config{Open: func(context.Context, string) (Reader, error) { return md.open(), nil }, RootCAs: roots,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, OnStatus: st.on})
	defer m.Close()
	if _, err := m.Add("src", "rtmps://"+front+"/live/tls", "api"); err != nil {
		t.Fatal(err)
	}
	st.wait(ctx, t, "live", state(Live))
	if n := waitRoom(ctx, t, sf, "tls").WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks at the destination", n)
	}

	// The system's roots do not know httptest's certificate.
	st2 := newStatuses()
	m2 := testManager(t, func(context.Context, string) (Reader, error) { return md.open(), nil }, st2)
	if _, err := m2.Add("src", "rtmps://"+front+"/live/untrusted", "api"); err != nil {
		t.Fatal(err)
	}
	bad := st2.wait(ctx, t, "backoff", state(Backoff))
	if !strings.HasPrefix(bad.Error, "the destination's TLS certificate is not trusted") {
		t.Fatalf("status %+v", bad)
	}
	t.Logf("untrusted: %q", bad.Error)
}

// tlsFront terminates TLS with cert on a loopback port and relays each
// connection to addr; it stops with the test.
func tlsFront(t *testing.T, cert tls.Certificate, addr string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				b, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer b.Close()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(b, c)
					b.Close()
					close(done)
				}()
				_, _ = io.Copy(c, b)
				c.Close()
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

// TestCannotCarry: a stream with nothing the destination's protocol takes
// (VP8 over RTMP, AV1 over MPEG-TS) backs off with that reason, before
// any connection is made.
func TestCannotCarry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for url, track := range map[string]tap.Track{
		"rtmp://127.0.0.1:1/live/k": {Kind: "video", Codec: "VP8", ClockRate: 90000},
		"srt://127.0.0.1:1":         {Kind: "video", Codec: "AV1", ClockRate: 90000},
	} {
		md := media{tracks: []tap.Track{track}, frames: []tap.Frame{{AU: [][]byte{{0}}}}, length: time.Second}
		st := newStatuses()
		m := testManager(t, func(context.Context, string) (Reader, error) { return md.open(), nil }, st)
		if _, err := m.Add("src", url, "api"); err != nil {
			t.Fatal(err)
		}
		got := st.wait(ctx, t, "backoff", state(Backoff))
		if !strings.Contains(got.Error, "cannot carry this stream's tracks ("+track.Codec+")") {
			t.Errorf("%s: %q", url, got.Error)
		}
	}
}
