package hls

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2"

	"github.com/parley/parley/internal/clientip"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/tap"
	"github.com/parley/parley/pkg/protocol"
)

// Error codes of HLS requests (httperr bodies).
const (
	CodeNotLive     = "not_live"
	CodeUnsupported = "unsupported_codec"
	CodeNotFound    = "not_found"
	CodeBadRequest  = "bad_request"
	CodeStarting    = "starting"
	CodeMethod      = "method_not_allowed"
)

// Caching: parts, segments and init files never change under their name
// (a new muxer has a new prefix), so caches keep them past their life in
// the playlist. A blocking playlist request names the part it waits for
// (_HLS_msn, _HLS_part), so its answer stays right for that URL a while;
// a plain playlist changes with every part.
const (
	cacheMedia    = "public, max-age=3600, immutable"
	cacheBlocking = "public, max-age=10"
	cachePlaylist = "no-cache"
)

// maxFileName bounds the file part of an HLS URL.
const maxFileName = 96

// parsePath splits "/<stream>/<file>" (the request path below /hls) and
// checks both: a stream name, and a file name of the muxer's alphabet
// (letters, digits, _ and one dot) ending in .m3u8 or .mp4.
func parsePath(p string) (stream, file string, err error) {
	p = strings.TrimPrefix(p, "/")
	stream, file, ok := strings.Cut(p, "/")
	switch {
	case !ok || file == "":
		return "", "", errors.New("the URL is /hls/<stream>/index.m3u8")
	case !protocol.ValidRoom(stream):
		return "", "", errors.New("stream names are 1-64 characters of A-Z a-z 0-9 _ . -")
	case len(file) > maxFileName:
		return "", "", errors.New("no such file")
	}
	name, ext, ok := strings.Cut(file, ".")
	if !ok || (ext != "m3u8" && ext != "mp4") || name == "" {
		return "", "", errors.New("no such file")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "", "", errors.New("no such file")
		}
	}
	return stream, file, nil
}

// ServeHTTP serves /<stream>/<file>: mount it with http.StripPrefix("/hls").
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Range")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		httperr.Write(w, http.StatusMethodNotAllowed, CodeMethod, r.Method+" is not allowed on HLS files; use GET")
		return
	}
	m.count(func(s *Stats) { s.Requests++ })
	if !m.rate.Allow(m.clientAddr(r), time.Now()) {
		m.count(func(s *Stats) { s.RateRefused++ })
		httperr.TooMany(w, time.Second, fmt.Sprintf("more than %d HLS requests a second from one address", m.cfg.RatePerIP))
		return
	}
	stream, file, err := parsePath(r.URL.Path)
	if err != nil {
		httperr.Write(w, http.StatusNotFound, CodeNotFound, err.Error())
		return
	}
	if m.cfg.Verify != nil {
		if err := m.cfg.Verify(r, stream); err != nil {
			httperr.Auth(w, err)
			return
		}
	}
	playlist := strings.HasSuffix(file, ".m3u8")
	mx, ok := m.lookup(stream)
	if !ok && playlist {
		if mx, err = m.muxer(stream); err != nil {
			httperr.Write(w, http.StatusServiceUnavailable, CodeStarting, "server is shutting down")
			return
		}
		ok = true
	}
	if !ok {
		httperr.Write(w, http.StatusNotFound, CodeNotFound, "no HLS of stream "+stream+" runs (load /hls/"+stream+"/index.m3u8)")
		return
	}
	mx.touch()
	mx.inflight.Add(1)
	defer func() {
		mx.inflight.Add(-1)
		mx.touch()
	}()
	if playlist {
		if err := mx.wait(r.Context()); err != nil {
			writeFailure(w, stream, err)
			return
		}
	}
	// Admitted once the stream plays: no on_play for a stream that is not.
	if err := mx.viewers.admit(m.viewerKey(r), func(id string) (func(), error) {
		if m.cfg.Authorize == nil {
			return func() {}, nil
		}
		return m.cfg.Authorize(r, stream, id)
	}); err != nil {
		httperr.Auth(w, err)
		return
	}
	blocking := r.URL.Query().Has("_HLS_msn") || strings.Contains(file, "_part")
	if blocking {
		release, ok := m.blocking.Acquire(m.clientAddr(r))
		if !ok {
			m.count(func(s *Stats) { s.BlockRefused++ })
			httperr.TooMany(w, m.cfg.Part, fmt.Sprintf("more than %d blocking HLS requests from one address", m.cfg.BlockingPerIP))
			return
		}
		defer release()
	}
	hm := mx.muxerOf()
	if hm == nil { // ended between wait and here
		writeFailure(w, stream, mx.failure())
		return
	}
	cache := cacheMedia
	switch {
	case playlist && r.URL.Query().Has("_HLS_msn"):
		cache = cacheBlocking
	case playlist:
		cache = cachePlaylist
	}
	rw := &responseWriter{w: w, cache: cache}
	if cache == cacheBlocking {
		mx.serveBlocking(rw, r, hm)
	} else {
		hm.Handle(rw, r)
	}
	rw.finish(stream, file, mx)
}

// serveBlocking answers a blocking playlist request (edge.go): it waits
// for the part, then shares the muxer's playlist with the others that
// waited for it.
func (mx *muxer) serveBlocking(w *responseWriter, r *http.Request, hm *gohlslib.Muxer) {
	msn, part, rest, err := directives(r.URL.Query())
	if err == nil {
		err = mx.edge.wait(r.Context(), mx.done, msn, part)
	}
	switch {
	case r.Context().Err() != nil:
		return // the client went
	case errors.Is(err, ErrClosed):
		w.status = http.StatusInternalServerError // finish: the stream ended
		return
	case err != nil:
		w.status = http.StatusBadRequest
		return
	}
	key := r.URL.Path + "?" + r.URL.RawQuery
	r = r.Clone(r.Context())
	r.URL.RawQuery = rest
	mx.shared.serve(w, r, key, hm)
}

// writeFailure answers a playlist request whose muxer could not start.
func writeFailure(w http.ResponseWriter, stream string, err error) {
	switch {
	case errors.Is(err, tap.ErrNotLive):
		httperr.Write(w, http.StatusNotFound, CodeNotLive, "stream "+stream+" is not live")
	case errors.Is(err, ErrUnsupported):
		httperr.Write(w, http.StatusConflict, CodeUnsupported, "stream "+stream+": "+strings.TrimPrefix(err.Error(), ErrUnsupported.Error()+": "))
	case errors.Is(err, errStartTimeout):
		w.Header().Set("Retry-After", "1")
		httperr.Write(w, http.StatusServiceUnavailable, CodeStarting, "stream "+stream+"'s HLS is starting; try again")
	default:
		httperr.Write(w, http.StatusNotFound, CodeNotLive, "stream "+stream+" ended")
	}
}

func (m *Manager) lookup(stream string) (*muxer, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mx, ok := m.muxers[stream]
	return mx, ok
}

func (m *Manager) clientAddr(r *http.Request) netip.Addr {
	if m.cfg.ClientAddr != nil {
		return clientip.Key(m.cfg.ClientAddr(r))
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	a, _ := netip.ParseAddr(host)
	return clientip.Key(a.Unmap())
}

// viewerKey tells viewers apart: address, user agent and token (players
// behind one NAT differ by browser or token, not by address).
func (m *Manager) viewerKey(r *http.Request) string {
	tok := r.URL.Query().Get("token")
	if tok == "" {
		tok = r.Header.Get("Authorization")
	}
	return m.clientAddr(r).String() + "\x00" + r.UserAgent() + "\x00" + tok
}

// responseWriter sets Parley's caching on gohlslib's answers and turns
// its bare error statuses (and the silence of an unknown file) into
// httperr bodies. Bodies of up to maxBuffered bytes (parts, init files,
// playlists) go out in one write with a Content-Length, instead of
// chunked in three: fewer system calls per part, and a length a CDN can
// use.
type responseWriter struct {
	w      http.ResponseWriter
	cache  string
	status int    // an error status gohlslib chose (held back)
	ok     int    // the success status, while the body is held
	buf    []byte // the body held
	wrote  bool   // a success went out
}

// maxBuffered bounds the body a responseWriter holds (a part of a few
// Mbit/s is under 200 KB; segments pass through past it).
const maxBuffered = 512 << 10

func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

func (rw *responseWriter) WriteHeader(code int) {
	if rw.wrote || rw.status != 0 || rw.ok != 0 {
		return
	}
	if code >= 400 {
		rw.status = code
		return
	}
	rw.ok = code
}

func (rw *responseWriter) Write(b []byte) (int, error) {
	if rw.status != 0 {
		return len(b), nil
	}
	if rw.ok == 0 {
		rw.ok = http.StatusOK
	}
	if rw.wrote {
		return rw.w.Write(b)
	}
	if len(rw.buf)+len(b) <= maxBuffered {
		rw.buf = append(rw.buf, b...)
		return len(b), nil
	}
	rw.send(false) // too big to hold: the rest streams
	return rw.w.Write(b)
}

// send writes the success status and the body held, with its length
// when it is the whole body.
func (rw *responseWriter) send(whole bool) {
	rw.wrote = true
	h := rw.w.Header()
	h.Set("Cache-Control", rw.cache)
	if whole {
		h.Set("Content-Length", strconv.Itoa(len(rw.buf)))
	}
	rw.w.WriteHeader(rw.ok)
	if len(rw.buf) > 0 {
		_, _ = rw.w.Write(rw.buf)
	}
	rw.buf = nil
}

func (rw *responseWriter) finish(stream, file string, mx *muxer) {
	if rw.wrote {
		return
	}
	if rw.ok != 0 && rw.status == 0 {
		rw.send(true)
		return
	}
	rw.w.Header().Del("Cache-Control")
	rw.w.Header().Del("Content-Type")
	switch rw.status {
	case 0: // gohlslib knows no such file (an old part, another muxer's prefix)
		httperr.Write(rw.w, http.StatusNotFound, CodeNotFound, "no file "+file+" in stream "+stream+"'s HLS (it is older than the playlist, or the stream restarted)")
	case http.StatusBadRequest:
		httperr.Write(rw.w, http.StatusBadRequest, CodeBadRequest, "_HLS_msn/_HLS_part are malformed or too far from the live edge")
	default: // the muxer closed while the request waited
		writeFailure(rw.w, stream, mx.failure())
	}
}
