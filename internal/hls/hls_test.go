package hls

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/internal/hls/hlstest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/tap"
)

// fakeReader plays H.264 access units in real time (25 fps, looping, a
// keyframe every 25) as a tap reader would hand them.
type fakeReader struct {
	tracks []tap.Track
	aus    [][][]byte
	start  time.Time
	i      int
	read   atomic.Uint64 // frames read, for Stats
	eof    chan struct{} // closed: Read answers io.EOF
	closed chan struct{}
	once   sync.Once
}

func newFakeReader(aus [][][]byte) *fakeReader {
	return &fakeReader{tracks: []tap.Track{{Kind: "video", Codec: "H264", ClockRate: 90000}}, aus: aus,
		start: time.Now(), eof: make(chan struct{}), closed: make(chan struct{})}
}

func (f *fakeReader) Tracks() []tap.Track { return f.tracks }

func (f *fakeReader) Read(ctx context.Context) (tap.Frame, error) {
	pts := time.Duration(f.i) * 40 * time.Millisecond
	// The source's pace: frame i is due at start+pts.
	t := time.NewTimer(time.Until(f.start.Add(pts)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return tap.Frame{}, ctx.Err()
	case <-f.eof:
		return tap.Frame{}, io.EOF
	case <-t.C:
	}
	au := f.aus[f.i%len(f.aus)]
	f.i++
	f.read.Add(1)
	return tap.Frame{Track: 0, PTS: 5*time.Second + pts, NTP: f.start.Add(pts), Key: f.i%25 == 1, AU: au}, nil
}

func (f *fakeReader) Stats() tap.ReaderStats { return tap.ReaderStats{Frames: f.read.Load()} }

func (f *fakeReader) Close() { f.once.Do(func() { close(f.closed) }) }

type env struct {
	m      *Manager
	srv    *httptest.Server
	mu     sync.Mutex
	opened []*fakeReader
}

func newEnv(t *testing.T, cfg Config, newReader func() (Reader, error)) *env {
	t.Helper()
	e := &env{}
	cfg.Open = func(ctx context.Context, stream string) (Reader, error) {
		r, err := newReader()
		if fr, ok := r.(*fakeReader); ok {
			e.mu.Lock()
			e.opened = append(e.opened, fr)
			e.mu.Unlock()
		}
		return r, err
	}
	e.m = New(cfg)
	mux := http.NewServeMux()
	mux.Handle("/hls/", http.StripPrefix("/hls", e.m))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		e.srv.CloseClientConnections()
		e.m.Close()
		e.srv.Close()
	})
	return e
}

func h264Env(t *testing.T, cfg Config) *env {
	rtmptest.NeedFFmpeg(t)
	aus := rtmptest.X264Frames(t, 50)
	return newEnv(t, cfg, func() (Reader, error) { return newFakeReader(aus), nil })
}

// TestFFprobe: Debian's ffprobe reads the LL-HLS of an H.264 stream:
// codec, size, and frames 40 ms apart without a gap.
func TestFFprobe(t *testing.T) {
	e := h264Env(t, Config{})
	streams, err := hlstest.Probe(context.Background(), e.srv.URL+"/hls/cam/index.m3u8", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 1 || streams[0].Codec != "h264" || streams[0].Width != 640 || streams[0].Height != 360 {
		t.Fatalf("ffprobe found %+v, want one h264 640x360 stream", streams)
	}
	if len(streams[0].PTS) < 25 {
		t.Fatalf("ffprobe read %d packets, want >= 25", len(streams[0].PTS))
	}
	// time base 1/90000: a frame is 3600.
	if gap := streams[0].Gaps(3600); gap != "" {
		t.Fatal(gap)
	}
}

var partRE = regexp.MustCompile(`#EXT-X-PART:DURATION=[0-9.]+,URI="([^"]+)"`)

// TestPlaylist: the media playlist has what LL-HLS players need, the
// token query is carried into every URI, and the headers are right.
func TestPlaylist(t *testing.T) {
	e := h264Env(t, Config{})
	res, body := hlstest.Get(t, e.srv.URL+"/hls/cam/index.m3u8?token=abc")
	if res.StatusCode != 200 {
		t.Fatalf("index.m3u8: %d %s", res.StatusCode, body)
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "*" || res.Header.Get("Cache-Control") != cachePlaylist {
		t.Errorf("index.m3u8 headers: %v", res.Header)
	}
	media := regexp.MustCompile(`(?m)^[^#].*m3u8.*$`).FindString(body)
	if !strings.Contains(media, "token=abc") {
		t.Fatalf("multivariant playlist names %q, without the token:\n%s", media, body)
	}
	res, body = hlstest.Get(t, e.srv.URL+"/hls/cam/"+media)
	for _, want := range []string{"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES", "PART-HOLD-BACK=", "#EXT-X-PART-INF:PART-TARGET=",
		"#EXT-X-PROGRAM-DATE-TIME:", "#EXT-X-PRELOAD-HINT:TYPE=PART", "#EXT-X-MAP:URI=", "#EXT-X-PART:"} {
		if !strings.Contains(body, want) {
			t.Errorf("media playlist lacks %s:\n%s", want, body)
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, "URI=\"") && !strings.Contains(line, "gap.mp4") && !strings.Contains(line, "token=abc") {
			t.Errorf("a URI without the token: %s", line)
		}
	}
	parts := partRE.FindAllStringSubmatch(body, -1)
	if len(parts) == 0 {
		t.Fatalf("no parts:\n%s", body)
	}
	res, part := hlstest.Get(t, e.srv.URL+"/hls/cam/"+parts[len(parts)-1][1])
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != cacheMedia || res.Header.Get("Content-Type") != "video/mp4" ||
		res.ContentLength != int64(len(part)) || len(part) == 0 {
		t.Errorf("part: %d %v, %d bytes (Content-Length %d)", res.StatusCode, res.Header, len(part), res.ContentLength)
	}
	// A blocking request for the next segment's first part.
	msn := regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`).FindStringSubmatch(body)
	n := strings.Count(body, "#EXTINF")
	if msn == nil {
		t.Fatalf("no media sequence:\n%s", body)
	}
	var seq int
	json.Unmarshal([]byte(msn[1]), &seq)
	res, body = hlstest.Get(t, e.srv.URL+"/hls/cam/"+strings.Split(media, "?")[0]+"?token=abc&_HLS_msn="+itoa(seq+n)+"&_HLS_part=0")
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != cacheBlocking {
		t.Errorf("blocking playlist: %d %v\n%s", res.StatusCode, res.Header, body)
	}
	// Preflight.
	req, _ := http.NewRequest(http.MethodOptions, e.srv.URL+"/hls/cam/index.m3u8", nil)
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "GET") {
		t.Errorf("OPTIONS: %d %v", pre.StatusCode, pre.Header)
	}
	if v := e.m.Viewers("cam"); v != 1 {
		t.Errorf("Viewers = %d, want 1", v)
	}
	// Files that are not there.
	for _, p := range []string{"cam/nope_part1.mp4", "cam/../x.m3u8", "cam/x.txt", "bad name/index.m3u8", "cam"} {
		res, _ := hlstest.Get(t, e.srv.URL+"/hls/"+p)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, res.StatusCode)
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestIdleStop: a muxer nobody asks for stops and closes its reader;
// the next request starts a fresh one.
func TestIdleStop(t *testing.T) {
	e := h264Env(t, Config{Idle: 300 * time.Millisecond})
	if res, body := hlstest.Get(t, e.srv.URL+"/hls/cam/index.m3u8"); res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	e.mu.Lock()
	r := e.opened[0]
	e.mu.Unlock()
	select {
	case <-r.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle muxer's reader was not closed")
	}
	waitFor(t, func() bool { return len(e.m.Streams()) == 0 })
	if st := e.m.Status("cam"); st.State != "idle" {
		t.Errorf("status after idle: %+v", st)
	}
	if res, body := hlstest.Get(t, e.srv.URL+"/hls/cam/index.m3u8"); res.StatusCode != 200 {
		t.Fatalf("after idle: %d %s", res.StatusCode, body)
	}
}

// TestStreamEnd: the publisher leaving (io.EOF) ends the muxer and a
// blocked request; the next request gets a new muxer (a new prefix).
func TestStreamEnd(t *testing.T) {
	e := h264Env(t, Config{})
	_, body := hlstest.Get(t, e.srv.URL+"/hls/cam/video1_stream.m3u8")
	prefix := regexp.MustCompile(`([0-9a-f]{12})_video1_init.mp4`).FindStringSubmatch(body)
	if prefix == nil {
		t.Fatalf("no init file:\n%s", body)
	}
	e.mu.Lock()
	close(e.opened[0].eof)
	e.mu.Unlock()
	waitFor(t, func() bool { return len(e.m.Streams()) == 0 })
	res, body := hlstest.Get(t, e.srv.URL+"/hls/cam/"+prefix[1]+"_video1_init.mp4")
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body, CodeNotFound) {
		t.Errorf("old init file: %d %s", res.StatusCode, body)
	}
	_, body = hlstest.Get(t, e.srv.URL+"/hls/cam/video1_stream.m3u8")
	if strings.Contains(body, prefix[1]) || !strings.Contains(body, "_video1_init.mp4") {
		t.Errorf("republished stream's playlist:\n%s", body)
	}
}

// TestUnsupported: VP8 video and a stream that is not live get clear,
// machine-readable errors, and the status says why.
func TestUnsupported(t *testing.T) {
	vp8 := func() (Reader, error) {
		r := &fakeReader{tracks: []tap.Track{{Kind: "video", Codec: "VP8", ClockRate: 90000}, {Kind: "audio", Codec: "Opus", ClockRate: 48000, Channels: 2}},
			eof: make(chan struct{}), closed: make(chan struct{})}
		return r, nil
	}
	e := newEnv(t, Config{}, vp8)
	res, body := hlstest.Get(t, e.srv.URL+"/hls/cam/index.m3u8")
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, CodeUnsupported) || !strings.Contains(body, "VP8") {
		t.Errorf("VP8: %d %s", res.StatusCode, body)
	}
	if st := e.m.Status("cam"); st.State != "unsupported" || !strings.Contains(st.Error, "VP8 video cannot be carried in HLS") {
		t.Errorf("VP8 status: %+v", st)
	}
	notLive := newEnv(t, Config{}, func() (Reader, error) { return nil, tap.ErrNotLive })
	res, body = hlstest.Get(t, notLive.srv.URL+"/hls/cam/index.m3u8")
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body, CodeNotLive) {
		t.Errorf("not live: %d %s", res.StatusCode, body)
	}
}

// TestMapTracks: what HLS carries of each source, and what it says.
func TestMapTracks(t *testing.T) {
	h264 := tap.Track{Kind: "video", Codec: "H264", ClockRate: 90000}
	pcmu := tap.Track{Kind: "audio", Codec: "PCMU", ClockRate: 8000}
	opus := tap.Track{Kind: "audio", Codec: "Opus", ClockRate: 48000, Channels: 2}
	vp8 := tap.Track{Kind: "video", Codec: "VP8", ClockRate: 90000}
	for _, c := range []struct {
		in      []tap.Track
		n       int
		err     bool
		noteHas string
	}{
		{[]tap.Track{h264, opus}, 2, false, ""},
		{[]tap.Track{h264, pcmu}, 1, false, "G.711"},
		{[]tap.Track{opus}, 1, false, ""},
		{[]tap.Track{vp8, opus}, 0, true, ""},
		{[]tap.Track{pcmu}, 0, true, ""},
		{[]tap.Track{h264, h264}, 1, false, "second video"},
	} {
		out, notes, err := mapTracks(c.in)
		if (err != nil) != c.err || len(out) != c.n || (c.noteHas != "" && !strings.Contains(strings.Join(notes, ";"), c.noteHas)) {
			t.Errorf("%v: %d tracks, notes %q, err %v", c.in, len(out), notes, err)
		}
	}
}

// TestVerify: a request Verify refuses gets 401, with nothing started.
func TestVerify(t *testing.T) {
	e := newEnv(t, Config{Verify: func(r *http.Request, stream string) error {
		if r.URL.Query().Get("token") != "good" {
			return errors.New("token: bad")
		}
		return nil
	}}, func() (Reader, error) { return nil, tap.ErrNotLive })
	res, _ := hlstest.Get(t, e.srv.URL+"/hls/cam/index.m3u8")
	if res.StatusCode != http.StatusUnauthorized || len(e.m.Streams()) != 0 {
		t.Errorf("no token: %d", res.StatusCode)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FuzzParsePath: no path makes parsePath panic, and what it accepts is
// a stream name and a plain file name.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/cam/index.m3u8", "/cam/abc_video1_part3.mp4", "/../x", "/a/b/c.mp4", "/cam/.m3u8", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		stream, file, err := parsePath(p)
		if err != nil {
			return
		}
		if strings.ContainsAny(file, "/\\") || strings.Contains(file, "..") || stream == "" || len(file) > maxFileName {
			t.Fatalf("parsePath(%q) = %q, %q", p, stream, file)
		}
	})
}

// TestKeep: a stream kept always on gets its muxer without a request,
// and it outlives the idle time.
func TestKeep(t *testing.T) {
	e := h264Env(t, Config{Idle: 100 * time.Millisecond})
	e.m.Keep("cam")
	waitFor(t, func() bool { return e.m.Status("cam").State == "live" })
	e.mu.Lock()
	r := e.opened[0]
	e.mu.Unlock()
	// Past several idle periods (frames are the clock here: 1 s of them).
	waitFor(t, func() bool { return r.Stats().Frames >= 50 })
	select {
	case <-r.closed:
		t.Fatal("the kept muxer stopped when idle")
	default:
	}
}

// TestSharedBlocking: players blocked on the same part all get it, and
// the same playlist.
func TestSharedBlocking(t *testing.T) {
	e := h264Env(t, Config{})
	_, body := hlstest.Get(t, e.srv.URL+"/hls/cam/video1_stream.m3u8")
	seq := regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`).FindStringSubmatch(body)
	if seq == nil {
		t.Fatalf("no media sequence:\n%s", body)
	}
	var s int
	json.Unmarshal([]byte(seq[1]), &s)
	next := e.srv.URL + "/hls/cam/video1_stream.m3u8?_HLS_msn=" + itoa(s+strings.Count(body, "#EXTINF")) + "&_HLS_part=1"
	bodies := make([]string, 20)
	var wg sync.WaitGroup
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := http.Get(next)
			if err != nil {
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode == http.StatusOK {
				bodies[i] = string(b)
			}
		}()
	}
	wg.Wait()
	for i, b := range bodies {
		if b == "" || b != bodies[0] || !strings.Contains(b, "#EXT-X-PART:") {
			t.Fatalf("player %d got %q (player 0: %q)", i, b, bodies[0])
		}
	}
}

// TestRatePerIP: past RatePerIP requests a second from one address, 429.
func TestRatePerIP(t *testing.T) {
	e := newEnv(t, Config{RatePerIP: 5}, func() (Reader, error) { return nil, tap.ErrNotLive })
	codes := map[int]int{}
	for range 8 {
		res, _ := hlstest.Get(t, e.srv.URL+"/hls/cam/index.m3u8")
		codes[res.StatusCode]++
		if res.StatusCode == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if codes[http.StatusNotFound] != 5 || codes[http.StatusTooManyRequests] != 3 {
		t.Errorf("statuses %v, want 5 × 404 then 3 × 429", codes)
	}
}
