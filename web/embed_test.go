package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	cases := []struct {
		path, ctype string
		code        int
		contains    string
	}{
		{"/", "text/html", 200, `src="/app/main.js"`},
		{"/r/abc", "text/html", 200, `src="/app/main.js"`},
		{"/r/", "text/html", 200, "<html"},
		{"/parley.js", "text/javascript", 200, "export { Client }"},
		{"/lib/client.js", "text/javascript", 200, "export class Client"},
		{"/app/call.js", "text/javascript", 200, "export function callPage"},
		{"/style.css", "text/css", 200, ":root"},
		{"/favicon.svg", "image/svg+xml", 200, "<svg"},
		{"/nope.js", "", 404, ""},
		{"/../embed.go", "", 404, ""},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
		if rec.Code != c.code {
			t.Errorf("%s: status %d, want %d", c.path, rec.Code, c.code)
			continue
		}
		if c.code != 200 {
			continue
		}
		if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, c.ctype) {
			t.Errorf("%s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-cache" {
			t.Errorf("%s: Cache-Control %q", c.path, got)
		}
		if !strings.Contains(rec.Body.String(), c.contains) {
			t.Errorf("%s: body lacks %q", c.path, c.contains)
		}
	}
}

func TestHandlerETag(t *testing.T) {
	h := Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/parley.js", nil))
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req := httptest.NewRequest("GET", "/parley.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("revalidation: status %d, want 304", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d, want 405", rec.Code)
	}
}

// The call page must stay small: no framework, at most 60 KB of JS
// gzip-compressed (the budget; JSDoc types make the plain files
// larger than what they cost on the wire). It loads /app/main.js, which
// imports /app/call.js for /r/<room>; count those and everything they
// import statically.
func TestJSBudget(t *testing.T) {
	h := Handler()
	get := func(p string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 200 {
			t.Fatalf("%s: status %d", p, rec.Code)
		}
		return rec.Body.String()
	}
	importRE := regexp.MustCompile(`(?m)^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]`)
	seen := map[string]bool{}
	total := 0
	zipped := 0 // each file gzip-compressed, as served
	var visit func(p string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		body := get(p)
		total += len(body)
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write([]byte(body))
		zw.Close()
		zipped += z.Len()
		for _, m := range importRE.FindAllStringSubmatch(body, -1) {
			visit(path.Join(path.Dir(p), m[1]))
		}
	}
	visit("/app/main.js")
	visit("/app/call.js")
	if len(seen) < 5 || zipped > 60_000 {
		t.Fatalf("call page JS: %d files, %d bytes, %d gzip-compressed; budget 60000 compressed", len(seen), total, zipped)
	}
	t.Logf("call page JS: %d files, %d bytes, %d gzip-compressed", len(seen), total, zipped)
}

// TestHandlerVendor: the vendored hls.js is served gzip-compressed to
// browsers that take it, plain to others, immutable (its version is in its
// path), with its licence next to it.
func TestHandlerVendor(t *testing.T) {
	h := Handler()
	const p = "/vendor/hls.js-1.7.4/hls.min.mjs"
	get := func(enc string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", p, nil)
		if enc != "" {
			req.Header.Set("Accept-Encoding", enc)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	plain, gz := get(""), get("br, gzip;q=0.8")
	if plain.Code != 200 || gz.Code != 200 {
		t.Fatalf("status %d / %d", plain.Code, gz.Code)
	}
	if plain.Header().Get("Content-Encoding") != "" || gz.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("Content-Encoding %q without gzip, %q with", plain.Header().Get("Content-Encoding"), gz.Header().Get("Content-Encoding"))
	}
	if get("gzip;q=0").Header().Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 got gzip")
	}
	if plain.Header().Get("ETag") == gz.Header().Get("ETag") {
		t.Error("the plain and gzip bodies share an ETag")
	}
	for _, rec := range []*httptest.ResponseRecorder{plain, gz} {
		if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("Cache-Control %q", cc)
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript") || rec.Header().Get("Vary") != "Accept-Encoding" {
			t.Errorf("headers %v", rec.Header())
		}
	}
	gzSize := gz.Body.Len()
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(b, plain.Body.Bytes()) || !strings.Contains(string(b), "isSupported") {
		t.Fatalf("gzip body: %v, %d bytes, plain %d", err, len(b), plain.Body.Len())
	}
	t.Logf("hls.js: %d bytes, %d gzip-compressed", plain.Body.Len(), gzSize)
	lic := httptest.NewRecorder()
	h.ServeHTTP(lic, httptest.NewRequest("GET", "/vendor/hls.js-1.7.4/LICENSE", nil))
	if lic.Code != 200 || !strings.Contains(lic.Body.String(), "Apache License") || !strings.HasPrefix(lic.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("LICENSE: %d %q", lic.Code, lic.Header().Get("Content-Type"))
	}
	// The app's own files revalidate as before.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/app/watch.js", nil))
	if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("/app/watch.js: Cache-Control %q", cc)
	}
}

// FuzzAcceptsGzip: any Accept-Encoding header is read without a panic, and
// gzip refused with q=0 is never taken.
func FuzzAcceptsGzip(f *testing.F) {
	for _, s := range []string{"gzip", "br, gzip;q=0.8", "gzip;q=0", "GZIP ; q=0.000", "identity", "gzip;q=x", ",,;;=", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Encoding", v)
		refused := regexp.MustCompile(`^gzip;q=0(\.0*)?$`).MatchString(strings.ToLower(strings.Join(strings.Fields(v), "")))
		if acceptsGzip(r) && refused {
			t.Errorf("%q: gzip taken although refused", v)
		}
	})
}
