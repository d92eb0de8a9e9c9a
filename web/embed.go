// Package web holds Parley's browser app: plain ES modules, CSS and HTML,
// embedded into the binary and served as is (no build step).
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// asset is one embedded file with its precomputed headers.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

type handler struct {
	assets map[string]asset // by URL path, e.g. "/parley.js"
	index  asset
}

const htmlType = "text/html; charset=utf-8"

// contentType picks the Content-Type from a file extension.
func contentType(ext string) string {
	switch ext {
	case ".html":
		return htmlType
	case ".js":
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

// Handler serves the app: "/" is the home page, "/r/<room>" (and "/r/") the
// call page (the same HTML; the script reads the room from the URL),
// "/b/<stream>" and "/w/<stream>" a broadcast's publisher and viewer pages, other
// paths the embedded assets. Responses carry "Cache-Control: no-cache" and an
// ETag, so browsers revalidate and get 304 for unchanged files.
func Handler() http.Handler {
	h := &handler{assets: map[string]asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.assets[strings.TrimPrefix(p, "static")] = asset{body: b, contentType: contentType(path.Ext(p)), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
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
	return []string{"/status.css", "/style.css", "/favicon.svg", "/app/status.js", "/app/ui.js", "/app/whip.js", "/app/admin.js", "/app/recordings.js"}
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
	var a asset
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
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if a.contentType == htmlType {
		hd.Set("Content-Security-Policy", csp)
		hd.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), speaker-selection=(self)")
	}
	// ServeContent handles If-None-Match (304), HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
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
