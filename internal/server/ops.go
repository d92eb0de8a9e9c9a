package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/parley/parley/web"

	"github.com/parley/parley/internal/httperr"
)

// Operations behind a door. /metrics, the stream status API and every
// management API are served on their own listener (--ops, default
// 127.0.0.1:9090, "off" to have none), which the operator keeps off the
// internet. On the main port:
//
//   - /metrics answers only admin tokens when auth is on, and not at all
//     (404, pointing at --ops) when it is off: an open server has no token
//     that could tell an operator from anyone else.
//   - /api/streams/{name} and its events (streamevents.go), which the
//     broadcast and watch pages follow, stay for viewers: as before on an open server; with auth, only to a token
//     for that stream (Bearer header or ?token=), so private rooms' live
//     state is not listed to anyone who asks.

// opsRoutes is the operations listener's mux.
func (s *Server) opsRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /api/streams/{name}", s.streamStatus)
	mux.HandleFunc("GET /api/status", s.opsStatusAPI) // status.go
	mux.Handle("GET /status", s.app)                  // the page and what it loads
	for _, f := range web.StatusAssets() {
		mux.Handle("GET "+f, s.app)
	}
	s.cameraRoutes(mux)
	s.recordRoutes(mux, false)
	s.pushRoutes(mux, false)
	return mux
}

// startOps binds and serves the operations listener unless it is off.
func (s *Server) startOps(ctx context.Context) error {
	side, err := s.startSide(ctx, "ops", s.cfg.Ops, s.opsRoutes(), time.Minute)
	if err != nil {
		return fmt.Errorf("%w (use --ops off or another address)", err)
	}
	s.ops = side
	return nil
}

// OpsURL is the operations listener's base URL, e.g.
// "http://127.0.0.1:9090", or "" when it is off.
func (s *Server) OpsURL() string { return s.ops.url() }

// hostPortURL is addr as a URL host, with loopback for the wildcard.
func hostPortURL(addr *net.TCPAddr) string {
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// publicMetrics is /metrics on the main port: admin tokens only.
func (s *Server) publicMetrics(w http.ResponseWriter, r *http.Request) {
	if s.auth == nil {
		httperr.Write(w, http.StatusNotFound, "not_found", "metrics are served on the operations listener (--ops), not on this port")
		return
	}
	if s.requireAdmin(w, r, "metrics") {
		s.metrics.ServeHTTP(w, r)
	}
}

// publicStreamStatus is /api/streams/{name} on the main port: open on an
// open server; with auth, for tokens that grant the stream.
func (s *Server) publicStreamStatus(w http.ResponseWriter, r *http.Request) {
	if s.allowStreamStatus(w, r) {
		s.streamStatus(w, r)
	}
}

// allowStreamStatus says whether r may read the status of stream {name}
// on the main port, and answers the error when not.
func (s *Server) allowStreamStatus(w http.ResponseWriter, r *http.Request) bool {
	if s.auth != nil {
		c, err := s.requestClaims(r, true)
		if err == nil && (!c.AllowsRoom(r.PathValue("name")) || !(c.Grants.Subscribe || c.Grants.Publish || c.Grants.Admin)) {
			err = fmt.Errorf("%w: the token does not grant stream %s", httperr.ErrInsufficientScope, r.PathValue("name"))
		}
		if err != nil {
			httperr.Auth(w, err)
			return false
		}
	}
	return true
}
