package server

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/origin"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/pkg/protocol"
)

// requestClaims verifies a request's access token: "Authorization: Bearer
// <token>", or, when query is true, the "token" URL parameter (browser
// WebSockets cannot set headers).
func (s *Server) requestClaims(r *http.Request, query bool) (auth.Claims, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok && query {
		tok = r.URL.Query().Get("token")
	}
	if query {
		return s.tokenClaims(tok, "(Authorization: Bearer or ?token=)")
	}
	return s.tokenClaims(tok, "(Authorization: Bearer)")
}

// tokenClaims verifies a token; hint says where a missing one belongs.
func (s *Server) tokenClaims(tok, hint string) (auth.Claims, error) {
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return auth.Claims{}, fmt.Errorf("%w %s", httperr.ErrNoToken, hint)
	}
	c, err := s.auth.Verify(tok, time.Now())
	if err != nil {
		return c, fmt.Errorf("token: %w", err)
	}
	return c, nil
}

// requestICEServers are STUN/TURN servers for a session that is no room
// member (WHIP, WHEP, show pages): the TURN user is prefix plus a random ID.
func (s *Server) requestICEServers(r *http.Request, prefix string) []protocol.ICEServer {
	return s.iceServers(signal.HostOf(r), prefix+room.NewID())
}

// ownOrigins is the origin policy: the server's own names (the HTTP
// listener's host, every interface address when it listens on all of
// them, --public-ip, --public-host) and the --allow-origins patterns.
// The TLS certificate's names are added when it is loaded.
func ownOrigins(cfg config.Config) *origin.Policy {
	p := origin.New(cfg.PublicHost, cfg.AllowOrigins)
	if cfg.PublicIP != "" {
		p.AddHost(cfg.PublicIP)
	}
	host, _, _ := net.SplitHostPort(cfg.HTTP)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		p.AddInterfaceAddrs()
	} else {
		p.AddHost(host)
	}
	return p
}
