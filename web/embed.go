// Package web holds Parley's browser app: plain ES modules, CSS and HTML,
// embedded into the binary and served as is (no build step).
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/andybalholm/brotli"
)

//go:embed static
var static embed.FS

// asset is one embedded file with its precomputed headers. Its body is
// read from the binary at its first request (pages and style sheets, which
// are rewritten, at startup), so a server keeps in memory only the files
// browsers have asked for; its compressed bodies are made then too. Memory
// is bounded: the file, and at most one brotli and one gzip copy, each
// smaller than the file.
type asset struct {
	name         string // path in the embedded tree, e.g. "static/parley.js"
	contentType  string
	immutable    bool // under /vendor/<name>-<version>/: cached for a year, never revalidated
	compressible bool // text of 1 KiB or more: sent compressed to browsers that take it

	once   sync.Once
	body   []byte // the file (rewritten for pages and style sheets), set by load
	etag   string // of body, set by load
	brOnce sync.Once
	gzOnce sync.Once
	br, gz []byte // compressed bodies, or nil when compressing saves less than a tenth
}

// load reads the file at its first use (unless Handler set its body
// already) and names its version.
func (a *asset) load() {
	a.once.Do(func() {
		if a.body == nil {
			b, err := static.ReadFile(a.name)
			if err != nil {
				// The files are compiled in; failing to read one is a build error.
				panic("web: reading embedded file: " + err.Error())
			}
			a.body = b
		}
		sum := sha256.Sum256(a.body)
		a.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	})
}

// encoded is the asset's body in the content coding enc ("br" or "gzip"),
// compressed once; nil when it is not worth sending. The body is loaded.
func (a *asset) encoded(enc string) []byte {
	if !a.compressible {
		return nil
	}
	if enc == "br" {
		a.brOnce.Do(func() { a.br = worthIt(a.body, brotliBytes(a.body)) })
		return a.br
	}
	a.gzOnce.Do(func() { a.gz = worthIt(a.body, gzipBytes(a.body)) })
	return a.gz
}

type handler struct {
	assets map[string]*asset // by URL path, e.g. "/parley.js"
	index  *asset
	prefix string // "/s/<hash of the whole tree>": the immutable, content-addressed copy of every asset
}

const htmlType = "text/html; charset=utf-8"

// contentType picks the Content-Type from a file extension.
func contentType(ext string) string {
	switch ext {
	case ".html":
		return htmlType
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".json":
		return "application/json"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// compressible: text (not images, fonts or archives, which are compressed
// already) of at least 1 KiB.
func compressible(size int64, ct string) bool {
	return size >= 1024 && (strings.HasPrefix(ct, "text/") || ct == "image/svg+xml" || ct == "application/json")
}

// gzipBytes is b gzip-compressed at the best level.
func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level: no error
	_, _ = zw.Write(b)                                       // to memory: no error
	_ = zw.Close()
	return buf.Bytes()
}

// brotliBytes is b brotli-compressed: at the best level (11) up to 128 KiB,
// a tenth of a second for the largest app file; level 9 above (hls.js: 0.1 s
// instead of 1.6 s, 8% larger).
func brotliBytes(b []byte) []byte {
	level := brotli.BestCompression
	if len(b) > 128<<10 {
		level = 9
	}
	var buf bytes.Buffer
	zw := brotli.NewWriterLevel(&buf, level)
	_, _ = zw.Write(b) // to memory: no error
	_ = zw.Close()
	return buf.Bytes()
}

// worthIt is z when it saves at least a tenth of b, else nil.
func worthIt(b, z []byte) []byte {
	if len(z) > len(b)*9/10 {
		return nil
	}
	return z
}

// acceptEncoding reads the q-values the request gives brotli and gzip
// (RFC 9110 §12.5.3): a coding not named takes "*"'s value, or 0; named
// without a q-value, 1.
func acceptEncoding(r *http.Request) (br, gz float64) {
	q := map[string]float64{}
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			enc, params, _ := strings.Cut(part, ";")
			enc = strings.ToLower(strings.TrimSpace(enc))
			if enc == "" {
				continue
			}
			f := 1.0
			for _, p := range strings.Split(params, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(strings.TrimSpace(k), "q") {
					var err error
					if f, err = strconv.ParseFloat(strings.TrimSpace(val), 64); err != nil || f < 0 || f > 1 {
						f = 0 // a malformed weight takes nothing
					}
				}
			}
			if _, seen := q[enc]; !seen { // the first mention counts
				q[enc] = f
			}
		}
	}
	get := func(enc string) float64 {
		if f, ok := q[enc]; ok {
			return f
		}
		return q["*"]
	}
	br, gz = get("br"), get("gzip")
	if f, ok := q["x-gzip"]; ok && f > gz {
		gz = f
	}
	return br, gz
}

// negotiate picks the body to send: brotli or gzip, whichever the request
// weighs higher (brotli on a tie: smaller), when the asset has it, else
// the file as is. enc is the Content-Encoding ("" for none).
func negotiate(r *http.Request, a *asset) (body []byte, enc string) {
	if !a.compressible {
		return a.body, ""
	}
	br, gz := acceptEncoding(r)
	try := []string{"br", "gzip"}
	if gz > br {
		try = []string{"gzip", "br"}
	}
	for _, e := range try {
		if (e == "br" && br <= 0) || (e == "gzip" && gz <= 0) {
			continue
		}
		if b := a.encoded(e); b != nil {
			return b, e
		}
	}
	return a.body, ""
}

// treeHash names one version of the embedded files: the first 8 bytes of
// a SHA-256 over every file's path and contents, in hex.
func treeHash(fsys fs.FS) (string, error) {
	var names []string
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return "", err
		}
		_, _ = h.Write([]byte(n + "\x00" + strconv.Itoa(len(b)) + "\x00")) // hash.Hash: no error
		_, _ = h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// hashPrefix is the URL prefix of this build's immutable asset copies.
func hashPrefix() string {
	sum, err := treeHash(static)
	if err != nil {
		// The files are compiled in; failing to read them is a build error.
		panic("web: hashing embedded files: " + err.Error())
	}
	return "/s/" + sum
}

// refRE finds the root-relative URLs in HTML attributes and CSS url()s.
var refRE = regexp.MustCompile(`((?:\b(?:href|src)=|url\()["']?)(/[^"'()\s>]+)`)

// rewrite points a page's or style sheet's references to embedded files at
// their content-addressed copies under prefix, so that a browser loads them
// once and then from its cache without asking. ES modules' relative imports
// resolve inside the prefix too.
func rewrite(b []byte, prefix string, known func(string) bool) []byte {
	return refRE.ReplaceAllFunc(b, func(m []byte) []byte {
		s := refRE.FindSubmatch(m)
		if !known(string(s[2])) {
			return m
		}
		return append(append(append([]byte{}, s[1]...), prefix...), s[2]...)
	})
}

// Handler serves the app: "/" is the home page, "/r/<room>" (and "/r/") the
// call page (the same HTML; the script reads the room from the URL),
// "/b/<stream>" and "/w/<stream>" a broadcast's publisher and viewer pages, other
// paths the embedded assets.
//
// Every asset is served twice: under "/s/<hash>/" (hash: of the whole tree,
// so it changes with any file) with "Cache-Control: public, max-age=31536000,
// immutable", and at its plain path with "no-cache" and an ETag, for
// bookmarks and the operations listener. The pages themselves are no-cache
// with an ETag (304 when unchanged); their script, style, preload and icon
// URLs, and the style sheets' url()s, are rewritten at startup to the hashed
// copies, so a repeat visit asks for the page alone. Vendored libraries
// (/vendor/<name>-<version>/, e.g. hls.js, loaded only by the pages that need
// them) have the version in their path and are immutable at both places.
// Text files go brotli- or gzip-compressed, by the request's Accept-Encoding,
// each compressed once, at its first request.
func Handler() http.Handler {
	h := &handler{assets: map[string]*asset{}, prefix: hashPrefix()}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		ct := contentType(path.Ext(p))
		if path.Base(p) == "LICENSE" {
			ct = "text/plain; charset=utf-8"
		}
		name := strings.TrimPrefix(p, "static")
		h.assets[name] = &asset{name: p, contentType: ct, immutable: strings.HasPrefix(name, "/vendor/"),
			compressible: compressible(info.Size(), ct)}
		return nil
	})
	if err != nil {
		panic("web: reading embedded files: " + err.Error())
	}
	known := func(p string) bool { _, ok := h.assets[p]; return ok }
	for _, a := range h.assets {
		if a.contentType == htmlType || strings.HasPrefix(a.contentType, "text/css") {
			b, err := static.ReadFile(a.name)
			if err != nil {
				panic("web: reading embedded files: " + err.Error())
			}
			a.body = rewrite(b, h.prefix, known)
			a.compressible = compressible(int64(len(a.body)), a.contentType)
			a.load()
		}
	}
	h.index = h.assets["/index.html"]
	return h
}

// StatusAssets are the files the status page (/status) and the
// recordings page (/recordings) load, at their plain and content-addressed
// paths, for a listener that serves those pages alone (the operations
// listener).
func StatusAssets() []string {
	files := []string{"/status.css", "/style.css", "/favicon.svg", "/app/status.js", "/app/ui.js", "/lib/api.js", "/lib/errors.js", "/app/admin.js", "/app/recordings.js"}
	prefix := hashPrefix()
	for _, f := range files { // ranges over the plain paths only
		files = append(files, prefix+f)
	}
	return files
}

const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob: mediastream:; connect-src 'self' ws: wss: blob:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// lookup finds the asset for a URL path and whether it is served immutable.
func (h *handler) lookup(p string) (a *asset, immutable bool) {
	switch {
	case p == "/" || p == "/index.html" || p == "/r" || strings.HasPrefix(p, "/r/"):
		return h.index, false
	case strings.HasPrefix(p, "/b/"):
		// Broadcasts: "/b/<stream>" publishes, "/w/<stream>" watches (the
		// scripts read the stream name from the URL).
		return h.assets["/broadcast.html"], false
	case strings.HasPrefix(p, "/w/"):
		return h.assets["/watch.html"], false
	case p == "/status":
		return h.assets["/status.html"], false
	case p == "/recordings":
		return h.assets["/recordings.html"], false
	case p == "/check":
		return h.assets["/check.html"], false
	case strings.HasPrefix(p, "/show/"):
		// Light show pages: "/show/<name>" is the host, "/show/<name>/screen"
		// a screen (the scripts read the show name from the URL).
		return h.assets[showPage(p)], false
	case strings.HasPrefix(p, h.prefix+"/"):
		a = h.assets[path.Clean(strings.TrimPrefix(p, h.prefix))]
		return a, true
	case strings.HasPrefix(p, "/s/"):
		// Another version's prefix (a page loaded before an upgrade that
		// now imports a module lazily): today's file, revalidated, never
		// cached as that version's.
		if _, rest, ok := strings.Cut(p[len("/s/"):], "/"); ok {
			return h.assets[path.Clean("/"+rest)], false
		}
		return nil, false
	}
	return h.assets[path.Clean(p)], false
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	a, immutable := h.lookup(r.URL.Path)
	if a == nil {
		http.NotFound(w, r)
		return
	}
	a.load()
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	if immutable || a.immutable {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	body, enc := negotiate(r, a)
	etag := a.etag
	if a.compressible {
		hd.Add("Vary", "Accept-Encoding")
	}
	if enc != "" {
		// Each representation has its own validator (RFC 9110 §8.8.3).
		etag = strings.TrimSuffix(a.etag, `"`) + "-" + enc + `"`
		hd.Set("Content-Encoding", enc)
	}
	hd.Set("ETag", etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if a.contentType == htmlType {
		hd.Set("Content-Security-Policy", csp)
		hd.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), speaker-selection=(self)")
	}
	if enc == "" {
		// ServeContent sets Content-Length and handles If-None-Match (304),
		// HEAD and ranges.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		return
	}
	// A compressed body: ServeContent would leave out Content-Length.
	if etagListed(r.Header.Get("If-None-Match"), etag) {
		hd.Del("Content-Type")
		hd.Del("Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body) // a client gone away: nothing to do
	}
}

// etagListed reports whether an If-None-Match header names etag or "*"
// (weak comparison, RFC 9110 §13.1.2).
func etagListed(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// showPage maps a light-show URL to its HTML asset: "/show/<name>" and
// "/show/<name>/screen"; anything else is not a page ("").
func showPage(p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/show/"), "/")
	switch {
	case parts[0] == "":
		return ""
	case len(parts) == 1:
		return "/show.html"
	case len(parts) == 2 && parts[1] == "screen":
		return "/show-screen.html"
	}
	return ""
}
