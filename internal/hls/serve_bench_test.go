package hls

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/parley/parley/internal/hls/hlstest"
)

// discardWriter is the cheapest ResponseWriter: what a request costs in
// this package, without net/http's connection work.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(code int) {
	if d.status == 0 {
		d.status = code
	}
}
func (d *discardWriter) Write(b []byte) (int, error) {
	d.WriteHeader(http.StatusOK)
	d.n += len(b)
	return len(b), nil
}

var mediaSeqRE = regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`)

// BenchmarkServe is the per-request cost of HLS serving in this package
// (ns/op, allocs/op), as the server mounts it (Config.Prefix): a part
// that is there (what every player fetches after each playlist), and a
// blocking playlist request for a part that is there (answered at once
// from the shared answer, as all but the first waiter are). The stream
// is real time: a file stays about 7 s, so run it with -benchtime 1s.
func BenchmarkServe(b *testing.B) {
	// One address here (the limit is still checked); mounted as the
	// server mounts it.
	e := h264Env(b, Config{RatePerIP: 1 << 30, Prefix: "/hls"})
	h := e.m
	_, body := hlstest.Get(b, e.srv.URL+"/hls/cam/video1_stream.m3u8?token=abc")
	parts := partRE.FindAllStringSubmatch(body, -1)
	seq := mediaSeqRE.FindStringSubmatch(body)
	if len(parts) == 0 || seq == nil {
		b.Fatalf("no parts:\n%s", body)
	}
	s, _ := strconv.Atoi(seq[1])
	// The newest finished segment's first part: there, and stays so.
	msn := s + strings.Count(body, "#EXTINF") - 1
	run := func(b *testing.B, target string) {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("User-Agent", "bench")
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req.WithContext(context.Background()))
		if w.status != http.StatusOK || w.n == 0 {
			b.Fatalf("%s: %d, %d bytes", target, w.status, w.n)
		}
		b.SetBytes(int64(w.n))
		b.ReportAllocs()
		for b.Loop() {
			w.h, w.status, w.n = http.Header{}, 0, 0
			h.ServeHTTP(w, req)
			if w.status != http.StatusOK {
				b.Fatalf("%s: %d (the benchmark must end before the file leaves the playlist: -benchtime 1s)", target, w.status)
			}
		}
	}
	b.Run("part", func(b *testing.B) { run(b, "/hls/cam/"+parts[len(parts)-1][1]) })
	b.Run("blocking-playlist", func(b *testing.B) {
		run(b, "/hls/cam/video1_stream.m3u8?token=abc&_HLS_msn="+strconv.Itoa(msn)+"&_HLS_part=0")
	})
}

// TestFileCache: a part is served from the bytes the muxer made once
// (the same bytes every time, with their length, a HEAD without them),
// an unknown file answers 404 every time (errors are not kept), and a
// file is forgotten once the playlist no longer lists its segment.
func TestFileCache(t *testing.T) {
	e := h264Env(t, Config{Prefix: "/hls"})
	_, body := hlstest.Get(t, e.srv.URL+"/hls/cam/video1_stream.m3u8")
	parts := partRE.FindAllStringSubmatch(body, -1)
	if len(parts) == 0 {
		t.Fatalf("no parts:\n%s", body)
	}
	url := e.srv.URL + "/hls/cam/" + parts[len(parts)-1][1]
	res1, b1 := hlstest.Get(t, url)
	res2, b2 := hlstest.Get(t, url)
	if res1.StatusCode != 200 || res2.StatusCode != 200 || b1 != b2 || len(b1) == 0 || res2.ContentLength != int64(len(b2)) ||
		res2.Header.Get("Content-Type") != "video/mp4" || res2.Header.Get("Cache-Control") != cacheMedia || res2.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("part twice: %d %d, %d and %d bytes, headers %v", res1.StatusCode, res2.StatusCode, len(b1), len(b2), res2.Header)
	}
	head, err := http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != 200 || head.ContentLength != int64(len(b1)) {
		t.Errorf("HEAD: %d, Content-Length %d, want %d", head.StatusCode, head.ContentLength, len(b1))
	}
	for range 2 {
		if res, body := hlstest.Get(t, e.srv.URL+"/hls/cam/x_video1_part999999.mp4"); res.StatusCode != http.StatusNotFound || !strings.Contains(body, CodeNotFound) {
			t.Fatalf("unknown part: %d %s", res.StatusCode, body)
		}
	}
	// The preload-hinted part, asked by many players at once before it is
	// made: one answer for all.
	hint := regexp.MustCompile(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"`).FindStringSubmatch(body)
	if hint == nil {
		t.Fatalf("no preload hint:\n%s", body)
	}
	got := getAll(e.srv.URL+"/hls/cam/"+hint[1], 10)
	for i, g := range got {
		if g == "" || g != got[0] {
			t.Fatalf("player %d got %d bytes of the hinted part (player 0: %d)", i, len(g), len(got[0]))
		}
	}
	mx, _ := e.m.lookup("cam")
	count := func() int {
		mx.files.mu.Lock()
		defer mx.files.mu.Unlock()
		return len(mx.files.m)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d files kept, want 2 (the parts)", n)
	}
	_, making := mx.edge.window()
	mx.files.sweep(making + 1) // the playlist has moved past the part's segment
	if n := count(); n != 0 || mx.files.bytes != 0 {
		t.Fatalf("%d files (%d bytes) kept after the sweep, want none", n, mx.files.bytes)
	}
}
