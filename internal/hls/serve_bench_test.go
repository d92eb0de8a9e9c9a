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
