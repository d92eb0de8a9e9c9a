package server

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/hls"
	"github.com/parley/parley/internal/httpconn"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
)

// LL-HLS: /hls/<stream>/index.m3u8 on the main port for every stream
// (--hls, per stream hls: off|on|always), served by an hls.Manager that
// reads the streams through the tap hub (docs/hls.md).

// startHLS builds the HLS manager once the taps run; nil when no stream
// can have HLS.
func (s *Server) startHLS() {
	always := []string{}
	anyOn := s.cfg.HLS == "on"
	for name := range s.cfg.Streams {
		switch s.cfg.HLSOf(name) {
		case "always":
			always = append(always, name)
			anyOn = true
		case "on":
			anyOn = true
		}
	}
	if !anyOn {
		return
	}
	m := hls.New(hls.Config{
		Open:          s.openHLS,
		Verify:        s.verifyHLS,
		Authorize:     s.authorizeHLS,
		ClientAddr:    s.clients.Request,
		Idle:          s.cfg.HLSIdle.D(),
		BlockingPerIP: s.cfg.HLSBlockingPerIP,
		RatePerIP:     s.cfg.HLSRatePerIP,
		Prefix:        "/hls",
		Logger:        s.log,
	})
	for _, name := range always {
		m.Keep(name)
	}
	s.hls = m
	s.metrics.GaugeFunc("parley_hls_muxers", "LL-HLS muxers running (one per stream being watched over HLS).", func() float64 { return float64(m.Stats().Muxers) })
	s.metrics.GaugeFunc("parley_hls_viewers", "LL-HLS viewers (distinct clients with a request in the last 5 s), all streams.", func() float64 { return float64(m.Stats().Viewers) })
	s.metrics.CounterFunc("parley_hls_requests_total", "LL-HLS requests answered (playlists, parts, segments).", func() float64 { return float64(m.Stats().Requests) })
	s.metrics.CounterFunc("parley_hls_blocking_refused_total", "LL-HLS blocking requests refused by --hls-blocking-per-ip.", func() float64 { return float64(m.Stats().BlockRefused) })
	s.metrics.CounterFunc("parley_hls_rate_refused_total", "LL-HLS requests refused by --hls-rate-per-ip.", func() float64 { return float64(m.Stats().RateRefused) })
	s.metrics.CounterFunc("parley_hls_frames_dropped_total", "Frames HLS muxers skipped because they fell behind their stream.", func() float64 { return float64(m.Stats().FramesDropped) })
}

func (s *Server) stopHLS() {
	if s.hls != nil {
		s.hls.Close()
	}
}

// HLSViewers are the HLS viewers of each stream being watched over HLS
// (for the status page).
func (s *Server) HLSViewers() map[string]int {
	if s.hls == nil {
		return map[string]int{}
	}
	return s.hls.AllViewers()
}

// openHLS reads a stream for its muxer: Opus stays Opus (hls.js and
// Safari play it in fMP4). Segments start at keyframes: a publisher that
// sends them only when asked (a browser) is asked for one a second, the
// segments' length, so players start and follow close to the live edge.
func (s *Server) openHLS(ctx context.Context, stream string) (hls.Reader, error) {
	room, ok := s.sfu.LookupRoom(sfu.Streams, stream)
	if !ok || len(room.Tracks()) == 0 {
		// An on-demand camera starts for its first viewer, over HLS as
		// over WHEP (a bounded wait: the pull's first attempt).
		if s.demandStream(ctx, stream) {
			room, ok = s.sfu.LookupRoom(sfu.Streams, stream)
		}
	}
	if ok {
		if _, err := hls.Carries(room.Tracks()); err != nil {
			return nil, err // refused at once, no tap started
		}
	}
	r, err := s.taps.Open(ctx, sfu.Streams, stream, tap.Options{KeyframeInterval: hlsKeyframeInterval})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// hlsKeyframeInterval is how often HLS asks a stream's publisher for a
// keyframe when none came (the segments' minimum length).
const hlsKeyframeInterval = time.Second

// verifyHLS checks every HLS request's token when auth is on: a
// subscribe grant for the stream, as WHEP viewers need, from ?token= (the
// playlists carry it into every URL) or Authorization: Bearer.
func (s *Server) verifyHLS(r *http.Request, stream string) error {
	if s.auth == nil {
		return nil
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		tok = r.URL.Query().Get("token")
	}
	c, err := s.hlsTokens.claims(strings.TrimSpace(tok), time.Now(), func(tok string) (auth.Claims, error) {
		return s.tokenClaims(tok, "(?token= on the playlist, or Authorization: Bearer)")
	})
	if err != nil {
		return err
	}
	return streamGrant(c, stream, false)
}

// tokenCache remembers the tokens it verified until they expire: an HLS
// player shows its token on every part (five requests a second), and a
// signature check costs tens of microseconds.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]auth.Claims
}

// maxCachedTokens bounds the cache; past it, it starts again empty.
const maxCachedTokens = 4096

func (tc *tokenCache) claims(tok string, now time.Time, verify func(string) (auth.Claims, error)) (auth.Claims, error) {
	tc.mu.Lock()
	c, ok := tc.m[tok]
	tc.mu.Unlock()
	if ok && now.Unix() < c.ExpiresAt && now.Unix() >= c.NotBefore {
		return c, nil
	}
	c, err := verify(tok)
	if err != nil {
		return c, err
	}
	tc.mu.Lock()
	if tc.m == nil || len(tc.m) >= maxCachedTokens {
		tc.m = map[string]auth.Claims{}
	}
	tc.m[tok] = c
	tc.mu.Unlock()
	return c, nil
}

// authorizeHLS admits a new HLS viewer (once per viewer) through the
// authorizer every listener uses: the token, the CIDR lists, the on_play
// hook; the status page counts the viewer until its end.
func (s *Server) authorizeHLS(r *http.Request, stream, id string) (func(), error) {
	tok := r.URL.Query().Get("token")
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		tok = b
	}
	return s.authorize(r.Context(), ingest.Request{Action: ingest.Read, Proto: "hls", Stream: stream, Token: tok,
		Remote: s.clients.Request(r).Unmap(), ID: id})
}

// serveHLS hands /hls/ to the manager for streams whose HLS is on.
func (s *Server) serveHLS(w http.ResponseWriter, r *http.Request) {
	stream, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/hls/"), "/")
	if s.hls == nil || s.cfg.HLSOf(stream) == "off" {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		httperr.Write(w, http.StatusNotFound, "hls_off", "HLS is off for stream "+stream+" (--hls, or hls: in the stream's settings)")
		return
	}
	s.hls.ServeHTTP(w, r) // below Prefix "/hls" (no copy of the request, as http.StripPrefix makes)
}

// hlsFirst hands /hls/ requests to serveHLS before the ServeMux's
// pattern matching (each HLS player makes about ten requests a second);
// a path the mux would clean and redirect still goes through it. A plain
// HTTP/1.1 keep-alive connection is taken over at its first HLS request
// (startHLSConns).
func (s *Server) hlsFirst(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hlsPath(r.URL.Path) && r.Method != http.MethodConnect {
			if s.hlsConns != nil && httpconn.Eligible(r) && s.hlsConns.Take(w, r) {
				return
			}
			s.serveHLS(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// hlsPath: a path hlsFirst sends to serveHLS.
func hlsPath(p string) bool {
	return strings.HasPrefix(p, "/hls/") && !strings.Contains(p, "//") && !strings.Contains(p, "/.")
}

// startHLSConns wraps the plain HTTP listener so that keep-alive
// connections taken over for HLS (internal/httpconn: one writev an answer,
// no background read) can come back to net/http when they ask for anything
// else. --hls-nethttp leaves HLS to net/http.
func (s *Server) startHLSConns(ln net.Listener) net.Listener {
	back := httpconn.NewListener(ln)
	s.hlsConns = httpconn.New(httpconn.Config{
		Handler: http.HandlerFunc(s.serveHLS),
		// The raw path: one with escapes goes to net/http, which decodes it.
		Takes: func(p string) bool { return hlsPath(p) && !strings.Contains(p, "%") },
	}, back)
	s.metrics.CounterFunc("parley_hls_keepalive_requests_total", "HLS requests answered on keep-alive connections taken over from net/http.", func() float64 {
		n, _ := s.hlsConns.Stats()
		return float64(n)
	})
	return back
}

// hlsStatus is the HLS part of a stream's status: the muxer's state, or
// for a live stream nobody watches over HLS yet, whether HLS can carry it.
func (s *Server) hlsStatus(stream string, tracks []sfu.TrackInfo) *hls.Status {
	if s.hls == nil || s.cfg.HLSOf(stream) == "off" {
		return &hls.Status{State: "off"}
	}
	st := s.hls.Status(stream)
	if st.State == "idle" && len(tracks) > 0 {
		notes, err := hls.Carries(tracks)
		if err != nil {
			st.State, st.Error = "unsupported", strings.TrimPrefix(err.Error(), hls.ErrUnsupported.Error()+": ")
		}
		st.Notes = notes
	}
	return &st
}
