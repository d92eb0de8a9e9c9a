package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
)

// get fetches p from h with the given request headers (name, value pairs).
func get(h http.Handler, method, p string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, p, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	h := Handler()
	pre := hashPrefix()
	cases := []struct {
		path, ctype string
		code        int
		contains    string
	}{
		{"/", "text/html", 200, `src="` + pre + `/app/main.js"`},
		{"/r/abc", "text/html", 200, `src="` + pre + `/app/main.js"`},
		{"/r/", "text/html", 200, "<html"},
		{"/parley.js", "text/javascript", 200, "export { Client }"},
		{"/lib/client.js", "text/javascript", 200, "export class Client"},
		{"/app/call.js", "text/javascript", 200, "export function callPage"},
		{"/lib/names.js", "text/javascript", 200, "export function randomRoomId"},
		{"/style.css", "text/css", 200, `url("` + pre + `/favicon.svg")`},
		{"/favicon.svg", "image/svg+xml", 200, "<svg"},
		{"/nope.js", "", 404, ""},
		{"/../embed.go", "", 404, ""},
		{pre + "/../embed.go", "", 404, ""},
		{pre + "/nope.js", "", 404, ""},
		{"/s/", "", 404, ""},
	}
	for _, c := range cases {
		rec := get(h, "GET", c.path)
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
	for _, enc := range []string{"", "gzip", "br"} {
		rec := get(h, "GET", "/parley.js", "Accept-Encoding", enc)
		etag := rec.Header().Get("ETag")
		if etag == "" || rec.Header().Get("Content-Encoding") != enc {
			t.Fatalf("%q: ETag %q, Content-Encoding %q", enc, etag, rec.Header().Get("Content-Encoding"))
		}
		if rec = get(h, "GET", "/parley.js", "Accept-Encoding", enc, "If-None-Match", etag); rec.Code != http.StatusNotModified {
			t.Fatalf("%q: revalidation: status %d, want 304", enc, rec.Code)
		}
	}
	if rec := get(h, "POST", "/"); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d, want 405", rec.Code)
	}
}

// TestHandlerEncodings: each coding is sent to the browsers that take it,
// decodes to the file, has its own ETag and a Content-Length of what is
// sent, for GET and HEAD alike.
func TestHandlerEncodings(t *testing.T) {
	h := Handler()
	const p = "/app/call.js"
	plain := get(h, "GET", p)
	decode := map[string]func(io.Reader) (io.Reader, error){
		"":     func(r io.Reader) (io.Reader, error) { return r, nil },
		"gzip": func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) },
		"br":   func(r io.Reader) (io.Reader, error) { return brotli.NewReader(r), nil },
	}
	etags := map[string]string{}
	for _, c := range []struct{ accept, want string }{
		{"", ""}, {"identity", ""}, {"gzip", "gzip"}, {"gzip, deflate, br, zstd", "br"}, {"br;q=0.5, gzip", "gzip"},
		{"br;q=0, gzip;q=0", ""}, {"*", "br"}, {"*;q=0.1, gzip;q=0.5", "gzip"}, {"br;q=0, *", "gzip"}, {"x-gzip", "gzip"},
		{"BR ; Q=1", "br"}, {"gzip;q=1.5", ""}, {"gzip;q=junk, br", "br"},
	} {
		rec := get(h, "GET", p, "Accept-Encoding", c.accept)
		if got := rec.Header().Get("Content-Encoding"); got != c.want {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", c.accept, got, c.want)
			continue
		}
		if rec.Header().Get("Vary") != "Accept-Encoding" {
			t.Errorf("%q: Vary %q", c.accept, rec.Header().Get("Vary"))
		}
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
			t.Errorf("%q: Content-Length %s for %d bytes", c.accept, cl, rec.Body.Len())
		}
		head := get(h, "HEAD", p, "Accept-Encoding", c.accept)
		if head.Code != 200 || head.Body.Len() != 0 || head.Header().Get("Content-Length") != rec.Header().Get("Content-Length") ||
			head.Header().Get("ETag") != rec.Header().Get("ETag") {
			t.Errorf("%q: HEAD %d, %d bytes, headers %v", c.accept, head.Code, head.Body.Len(), head.Header())
		}
		zr, err := decode[c.want](bytes.NewReader(rec.Body.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(zr); err != nil || !bytes.Equal(b, plain.Body.Bytes()) {
			t.Errorf("%q: the body does not decode to the file (%v)", c.accept, err)
		}
		etags[c.want] = rec.Header().Get("ETag")
		if c.want != "" && rec.Body.Len() >= plain.Body.Len()*9/10 {
			t.Errorf("%q: %d bytes of %d", c.want, rec.Body.Len(), plain.Body.Len())
		}
	}
	if len(etags) != 3 || etags[""] == etags["gzip"] || etags["gzip"] == etags["br"] || etags[""] == etags["br"] {
		t.Errorf("ETags per coding: %q", etags)
	}
	// Small files and compressed formats go as they are.
	if rec := get(h, "GET", "/favicon.svg", "Accept-Encoding", "br, gzip"); rec.Header().Get("Content-Encoding") != "" || rec.Header().Get("Vary") != "" {
		t.Errorf("favicon.svg (229 bytes): %v", rec.Header())
	}
	for _, ct := range []string{"image/png", "application/octet-stream", "font/woff2"} {
		if compressible(4096, ct) {
			t.Errorf("%s is compressed", ct)
		}
	}
}

// TestHandlerHashed: the pages point at the content-addressed copies, which
// are immutable; the plain paths and other versions' prefixes revalidate.
func TestHandlerHashed(t *testing.T) {
	h := Handler()
	pre := hashPrefix()
	if !regexp.MustCompile(`^/s/[0-9a-f]{16}$`).MatchString(pre) {
		t.Fatalf("prefix %q", pre)
	}
	for _, page := range []string{"/", "/r/x", "/b/s", "/w/s", "/show/x", "/show/x/screen", "/status", "/recordings", "/check"} {
		body := get(h, "GET", page).Body.String()
		refs := pageRefRE.FindAllStringSubmatch(body, -1)
		if len(refs) < 3 {
			t.Errorf("%s: %d references", page, len(refs))
		}
		for _, m := range refs {
			if !strings.HasPrefix(m[1], pre+"/") {
				t.Errorf("%s: %s is not content-addressed", page, m[1])
				continue
			}
			rec := get(h, "GET", m[1], "Accept-Encoding", "br")
			if rec.Code != 200 || rec.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
				t.Errorf("%s: %s: %d, Cache-Control %q", page, m[1], rec.Code, rec.Header().Get("Cache-Control"))
			}
			plain := get(h, "GET", strings.TrimPrefix(m[1], pre), "Accept-Encoding", "br")
			if plain.Code != 200 || plain.Header().Get("Cache-Control") != "no-cache" || !bytes.Equal(plain.Body.Bytes(), rec.Body.Bytes()) {
				t.Errorf("%s: plain %s: %d, Cache-Control %q", page, m[1], plain.Code, plain.Header().Get("Cache-Control"))
			}
		}
	}
	old := get(h, "GET", "/s/0123456789abcdef/app/main.js")
	if old.Code != 200 || old.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("another version's prefix: %d, Cache-Control %q", old.Code, old.Header().Get("Cache-Control"))
	}
	if cc := get(h, "GET", "/vendor/hls.js-1.7.4/hls.min.mjs").Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
		t.Errorf("vendored hls.js: Cache-Control %q", cc)
	}
	// The operations listener serves the status pages' assets at both paths.
	served := map[string]bool{}
	for _, f := range StatusAssets() {
		served[f] = true
	}
	for _, page := range []string{"/status", "/recordings"} {
		for _, m := range pageRefRE.FindAllStringSubmatch(get(h, "GET", page).Body.String(), -1) {
			if !served[m[1]] || !served[strings.TrimPrefix(m[1], pre)] {
				t.Errorf("%s loads %s, which StatusAssets lacks", page, m[1])
			}
		}
	}
}

// TestHashChanges: the prefix names the files' contents.
func TestHashChanges(t *testing.T) {
	sub, err := fs.Sub(static, ".")
	if err != nil {
		t.Fatal(err)
	}
	a, err := treeHash(sub)
	if err != nil {
		t.Fatal(err)
	}
	if "/s/"+a != hashPrefix() {
		t.Fatalf("%s vs %s", a, hashPrefix())
	}
	b, err := treeHash(changed{sub, "static/app/main.js"})
	if err != nil || a == b {
		t.Fatalf("a changed file keeps the hash %s (%v)", b, err)
	}
}

// changed is fsys with one more byte at the end of one file.
type changed struct {
	fs.FS
	name string
}

func (c changed) ReadFile(name string) ([]byte, error) {
	b, err := fs.ReadFile(c.FS, name)
	if name == c.name {
		b = append(b, '\n')
	}
	return b, err
}

func (c changed) Open(name string) (fs.File, error) { return c.FS.Open(name) }

var (
	staticImportRE  = regexp.MustCompile(`(?m)^\s*(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]`)
	dynamicImportRE = regexp.MustCompile(`\bimport\(\s*['"]([^'"]+)['"]\s*\)`)
	commentRE       = regexp.MustCompile(`(?s:/\*.*?\*/)|(?m:^\s*//[^\n]*)`)
	pageRefRE       = regexp.MustCompile(`<(?:link|script)\b[^>]*?\b(?:href|src)="([^"]+)"`)
	cssURLRE        = regexp.MustCompile(`url\(["']?([^"')]+)`)
)

// imports lists a module's static and dynamic imports (string literals,
// outside comments).
func imports(js string) (static, dynamic []string) {
	js = commentRE.ReplaceAllString(js, "")
	for _, m := range staticImportRE.FindAllStringSubmatch(js, -1) {
		static = append(static, m[1]+m[2])
	}
	for _, m := range dynamicImportRE.FindAllStringSubmatch(js, -1) {
		dynamic = append(dynamic, m[1])
	}
	return static, dynamic
}

// TestImportsRelative: every module imports the others by relative URL, so
// that a page loaded from the content-addressed prefix stays inside it (an
// absolute "/app/x.js" would load a second, revalidated copy of x).
func TestImportsRelative(t *testing.T) {
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".js" || strings.HasPrefix(p, "static/vendor/") {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		st, dyn := imports(string(b))
		for _, spec := range append(st, dyn...) {
			if !strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") {
				t.Errorf("%s imports %q: not relative", p, spec)
			}
		}
		// Root-relative URLs in code: only the vendored, versioned libraries.
		for _, m := range regexp.MustCompile(`['"\x60](/(?:app|lib|vendor|[\w-]+\.(?:js|css|svg))[^'"\x60]*)`).FindAllStringSubmatch(commentRE.ReplaceAllString(string(b), ""), -1) {
			if !strings.HasPrefix(m[1], "/vendor/") {
				t.Errorf("%s names %q: use a relative URL (new URL(x, import.meta.url)) or /vendor/", p, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pageWeight is what a first visit to a page loads, by URL: the page, its
// style sheets and what they load, its icon, its scripts and modulepreloads
// and every module they import statically, and the modules the page's
// route imports dynamically (routes, by name relative to /app/). Sizes are
// of the bodies sent to a browser that takes brotli. onDemand lists the
// dynamic imports left out (loaded later, when a person asks).
func pageWeight(t *testing.T, h http.Handler, page string, routes ...string) (files map[string]int, onDemand []string) {
	t.Helper()
	files = map[string]int{}
	fetch := func(u string) string {
		rec := get(h, "GET", u, "Accept-Encoding", "br, gzip")
		if rec.Code != 200 {
			t.Fatalf("%s: %s: status %d", page, u, rec.Code)
		}
		files[u] = rec.Body.Len()
		return get(h, "GET", u).Body.String()
	}
	taken := map[string]bool{}
	for _, r := range routes {
		taken[r] = true
	}
	var module func(u string)
	module = func(u string) {
		if _, seen := files[u]; seen {
			return
		}
		st, dyn := imports(fetch(u))
		for _, s := range st {
			module(path.Join(path.Dir(u), s))
		}
		for _, s := range dyn {
			if taken[path.Base(s)] {
				module(path.Join(path.Dir(u), s))
			} else {
				onDemand = append(onDemand, path.Join(path.Dir(u), s))
			}
		}
	}
	html := fetch(page)
	for _, m := range pageRefRE.FindAllStringSubmatch(html, -1) {
		u := m[1]
		switch path.Ext(u) {
		case ".js", ".mjs":
			module(u)
		case ".css":
			for _, c := range cssURLRE.FindAllStringSubmatch(fetch(u), -1) {
				if _, seen := files[c[1]]; !seen && strings.HasPrefix(c[1], "/") {
					fetch(c[1])
				}
			}
		default:
			if _, seen := files[u]; !seen {
				fetch(u)
			}
		}
	}
	return files, onDemand
}

// sum totals the files whose URL ext matches (all when exts is empty) and
// lists them, largest first.
func sum(files map[string]int, exts ...string) (total int, list string) {
	var names []string
	for u, n := range files {
		if len(exts) == 0 || slicesContains(exts, path.Ext(u)) {
			names = append(names, u)
			total += n
		}
	}
	sort.Slice(names, func(i, j int) bool { return files[names[i]] > files[names[j]] })
	for _, u := range names {
		list += "\n  " + strconv.Itoa(files[u]) + "\t" + u
	}
	return total, list
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestPageBudget (issue #13's performance budget): the home page is at most
// 40 KB compressed on a first visit, everything it loads counted; the call
// page's JavaScript at most 60 KB compressed (brotli, and gzip for browsers
// that take nothing else). Every file either
// loads is content-addressed (cached without revalidation on later visits).
func TestPageBudget(t *testing.T) {
	h := Handler()
	pre := hashPrefix()
	for _, c := range []struct {
		page   string
		routes []string // what main.js imports for this URL
		exts   []string // what counts
		budget int
	}{
		{"/", []string{"home.js"}, nil, 40_000},
		{"/r/x", []string{"call.js"}, []string{".js", ".mjs"}, 60_000},
	} {
		files, onDemand := pageWeight(t, h, c.page, c.routes...)
		total, list := sum(files, c.exts...)
		all, _ := sum(files)
		for u := range files {
			if u != c.page && !strings.HasPrefix(u, pre+"/") {
				t.Errorf("%s loads %s, not content-addressed", c.page, u)
			}
		}
		gz := 0 // the same files to a browser that takes gzip only (Firefox and Safari over plain http)
		for u := range files {
			if len(c.exts) == 0 || slicesContains(c.exts, path.Ext(u)) {
				gz += get(h, "GET", u, "Accept-Encoding", "gzip").Body.Len()
			}
		}
		if total > c.budget || gz > c.budget {
			t.Errorf("%s: %d bytes brotli-compressed, %d gzip (%v), budget %d:%s", c.page, total, gz, c.exts, c.budget, list)
			continue
		}
		t.Logf("%s: %d bytes brotli-compressed, %d gzip (%v; %d in all, %d files), budget %d; on demand: %v%s", c.page, total, gz, c.exts, all, len(files), c.budget, onDemand, list)
	}
	// The home page does not load the client library.
	files, _ := pageWeight(t, h, "/", "home.js")
	if _, ok := files[pre+"/parley.js"]; ok {
		t.Error("the home page loads parley.js")
	}
}

// FuzzAcceptEncoding: any Accept-Encoding header is read without a panic,
// and a coding refused with q=0 is never sent.
func FuzzAcceptEncoding(f *testing.F) {
	for _, s := range []string{"gzip", "br, gzip;q=0.8", "gzip;q=0", "GZIP ; q=0.000", "identity", "gzip;q=x", ",,;;=", "*", "*;q=0", "br;q=0, *", "B r;q=0,*"} {
		f.Add(s)
	}
	h := Handler()
	a := h.(*handler).assets["/app/call.js"]
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Encoding", v)
		br, gz := acceptEncoding(r)
		_, enc := negotiate(r, a)
		if (enc == "br" && br <= 0) || (enc == "gzip" && gz <= 0) {
			t.Errorf("%q: %s sent although refused", v, enc)
		}
		// Spaces around the separators are allowed (OWS); one inside a
		// coding ("B r") makes another, unknown coding, not br.
		norm := strings.TrimSpace(regexp.MustCompile(`[ \t]*([,;=])[ \t]*`).ReplaceAllString(strings.ToLower(v), "$1"))
		refused := regexp.MustCompile(`(^|,)(gzip|br);q=0(\.0*)?(,|$)`).FindAllStringSubmatch(norm, -1)
		for _, m := range refused {
			if enc == m[2] && !strings.Contains(strings.ToLower(v), "x-gzip") {
				t.Errorf("%q: %s sent although refused", v, enc)
			}
		}
	})
}
