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
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// asset is one embedded file with its precomputed headers.
type asset struct {
	body        []byte
	contentType string
	etag        string
	immutable   bool // under /vendor/<name>-<version>/: cached for a year, never revalidated

	gzOnce sync.Once
	gz     []byte // body gzip-compressed (made at the first request), when that saves at least a tenth; else nil
}

// gzipped is the asset's gzip body, or nil when it is not worth sending.
func (a *asset) gzipped() []byte {
	a.gzOnce.Do(func() { a.gz = compress(a.body, a.contentType) })
	return a.gz
}

type handler struct {
	assets map[string]*asset // by URL path, e.g. "/parley.js"
	index  *asset
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

// compress gzips a text asset of 1 KiB or more; nil when it is not text or
// gzip saves less than a tenth.
func compress(b []byte, ct string) []byte {
	if len(b) < 1024 || !(strings.HasPrefix(ct, "text/") || ct == "image/svg+xml" || ct == "application/json") {
		return nil
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level: no error
	_, _ = zw.Write(b)                                       // to memory: no error
	_ = zw.Close()
	if buf.Len() > len(b)*9/10 {
		return nil
	}
	return buf.Bytes()
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip
// (named with a q-value above 0).
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			enc, params, _ := strings.Cut(part, ";")
			if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
				continue
			}
			q, ok := strings.CutPrefix(strings.ToLower(strings.ReplaceAll(params, " ", "")), "q=")
			if !ok {
				return true
			}
			f, err := strconv.ParseFloat(q, 64)
			return err == nil && f > 0
		}
	}
	return false
}

// Handler serves the app: "/" is the home page, "/r/<room>" (and "/r/") the
// call page (the same HTML; the script reads the room from the URL),
// "/b/<stream>" and "/w/<stream>" a broadcast's publisher and viewer pages, other
// paths the embedded assets. Responses carry "Cache-Control: no-cache" and an
// ETag, so browsers revalidate and get 304 for unchanged files; vendored
// libraries (/vendor/<name>-<version>/, e.g. hls.js, loaded only by the
// pages that need them) have the version in their path and are immutable.
// Text files go gzip-compressed to browsers that take it.
func Handler() http.Handler {
	h := &handler{assets: map[string]*asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := contentType(path.Ext(p))
		if path.Base(p) == "LICENSE" {
			ct = "text/plain; charset=utf-8"
		}
		name := strings.TrimPrefix(p, "static")
		h.assets[name] = &asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`,
			immutable: strings.HasPrefix(name, "/vendor/")}
		return nil
	})
	if err != nil {
		// The files are compiled in; failing to read them is a build error.
		panic("web: reading embedded files: " + err.Error())
	}
	h.index = h.assets["/index.html"]
	return h
}

// StatusAssets are the files the status page (/status) and the
// recordings page (/recordings) load, for a listener that serves those
// pages alone (the operations listener).
func StatusAssets() []string {
	return []string{"/status.css", "/style.css", "/favicon.svg", "/app/status.js", "/app/ui.js", "/lib/api.js", "/lib/errors.js", "/app/admin.js", "/app/recordings.js"}
}

const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob: mediastream:; connect-src 'self' ws: wss: blob:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	var a *asset
	switch {
	case p == "/" || p == "/index.html" || p == "/r" || strings.HasPrefix(p, "/r/"):
		a = h.index
	case strings.HasPrefix(p, "/b/") || strings.HasPrefix(p, "/w/"):
		// Broadcasts: "/b/<stream>" publishes, "/w/<stream>" watches (the
		// scripts read the stream name from the URL).
		if p[1] == 'b' {
			a = h.assets["/broadcast.html"]
		} else {
			a = h.assets["/watch.html"]
		}
	case p == "/status":
		a = h.assets["/status.html"]
	case p == "/recordings":
		a = h.assets["/recordings.html"]
	case strings.HasPrefix(p, "/show/"):
		// Light show pages: "/show/<name>" is the host, "/show/<name>/screen"
		// a screen (the scripts read the show name from the URL).
		var ok bool
		if a, ok = h.assets[showPage(p)]; !ok {
			http.NotFound(w, r)
			return
		}
	default:
		var ok bool
		if a, ok = h.assets[path.Clean(p)]; !ok {
			http.NotFound(w, r)
			return
		}
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	if a.immutable {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	body, etag := a.body, a.etag
	if gz := a.gzipped(); gz != nil {
		hd.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			body, etag = gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
			hd.Set("Content-Encoding", "gzip")
		}
	}
	hd.Set("ETag", etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if a.contentType == htmlType {
		hd.Set("Content-Security-Policy", csp)
		hd.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), speaker-selection=(self)")
	}
	// ServeContent handles If-None-Match (304), HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
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
