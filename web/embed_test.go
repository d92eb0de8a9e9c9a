package web

import (
	"net/http"
	"net/http/httptest"
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
		{"/parley.js", "text/javascript", 200, "export class Client"},
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

// The call page must stay small: no framework, well under 150 KB of JS.
func TestJSBudget(t *testing.T) {
	total := 0
	for _, p := range Paths() {
		if strings.HasSuffix(p, ".js") {
			rec := httptest.NewRecorder()
			Handler().ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
			total += rec.Body.Len()
		}
	}
	if total == 0 || total > 150_000 {
		t.Fatalf("all JS together is %d bytes, budget 150000", total)
	}
	t.Logf("all JS: %d bytes", total)
}
