package server

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/pkg/protocol"
)

// Connection check (/check, docs/check.md): the page asks GET /api/check
// for what to test, then opens one data channel per media transport
// through POST /api/check/media?transport=udp|tcp.
const (
	checksPerMinute = 30               // per client address, GET and POST together (one run of the page takes 3)
	checkProbeTTL   = 15 * time.Second // a media probe's connection lives at most this long
	maxCheckOffer   = 16 << 10         // a data-channel-only offer is a few KiB
)

// checkMedia is the SFU's media ports; 0 when off.
type checkMedia struct {
	UDP int `json:"udp"`
	TCP int `json:"tcp"`
}

// checkInfo is GET /api/check's answer: STUN/TURN with a credential valid
// for --turn-ttl (the only secret in it; with auth on only for a valid
// token, any grant) and the media ports.
type checkInfo struct {
	ICEServers []protocol.ICEServer `json:"iceServers"`
	Media      checkMedia           `json:"media"`
	// TURNNeedsToken: auth is on and the request showed no valid token,
	// so iceServers holds STUN only (a TURN credential is a relay anyone
	// could use; calls get one only after their token is verified).
	TURNNeedsToken bool `json:"turnNeedsToken,omitempty"`
}

// checkAllowed applies the origin policy and the per-address rate; false
// means the answer has been written.
func (s *Server) checkAllowed(w http.ResponseWriter, r *http.Request) bool {
	if o := r.Header.Get("Origin"); !s.origins.Allowed(o) {
		httperr.Write(w, http.StatusForbidden, httperr.CodeForbiddenOrigin, "pages from "+o+" may not use this server (see --public-host and --allow-origins)")
		return false
	}
	if !s.checks.Allow(s.clients.Request(r), time.Now()) {
		httperr.TooMany(w, time.Minute/checksPerMinute, "too many connection checks from this address; try again in a minute")
		return false
	}
	return true
}

func (s *Server) checkInfo(w http.ResponseWriter, r *http.Request) {
	if !s.checkAllowed(w, r) {
		return
	}
	info := checkInfo{ICEServers: s.requestICEServers(r, "check-")}
	if s.auth != nil {
		if _, err := s.requestClaims(r, true); err != nil {
			info.ICEServers, info.TURNNeedsToken = stunOnly(info.ICEServers), true
		}
	}
	if s.sfu != nil {
		info.Media.UDP = portOf(s.sfu.UDPAddr())
		if a := s.sfu.TCPAddr(); a != nil {
			info.Media.TCP = portOf(a)
		}
	}
	if info.ICEServers == nil {
		info.ICEServers = []protocol.ICEServer{}
	}
	writeJSON(w, http.StatusOK, info)
}

// checkProbe answers a data-channel-only SDP offer with one on the SFU's
// UDP port or its ICE-TCP port (sfu.Probe).
func (s *Server) checkProbe(w http.ResponseWriter, r *http.Request) {
	if !s.checkAllowed(w, r) {
		return
	}
	tcp := r.URL.Query().Get("transport") == "tcp"
	if !tcp && r.URL.Query().Get("transport") != "udp" {
		httperr.Write(w, http.StatusBadRequest, "bad_request", "transport must be udp or tcp")
		return
	}
	if s.auth != nil {
		// A probe costs a peer connection for up to checkProbeTTL: with
		// auth on, only for people with a valid token (any grant), as TURN.
		if _, err := s.requestClaims(r, true); err != nil {
			httperr.Auth(w, err)
			return
		}
	}
	if s.sfu == nil {
		httperr.Write(w, http.StatusServiceUnavailable, "media_off", "this server has no media plane (--media-udp off)")
		return
	}
	offer, err := io.ReadAll(io.LimitReader(r.Body, maxCheckOffer+1))
	if err != nil || len(offer) > maxCheckOffer {
		httperr.Write(w, http.StatusBadRequest, "bad_request", "the offer is missing or too large")
		return
	}
	answer, err := s.sfu.Probe(string(offer), tcp, checkProbeTTL)
	switch {
	case errors.Is(err, sfu.ErrNoTCP):
		httperr.Write(w, http.StatusNotFound, "media_tcp_off", "this server does not offer media over TCP (--media-tcp off)")
		return
	case err != nil:
		s.log.Debug("check probe", "err", err, "host", signal.HostOf(r))
		httperr.Write(w, http.StatusBadRequest, "bad_offer", "the offer was not accepted")
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// stunOnly keeps the stun: URLs of servers, without credentials.
func stunOnly(servers []protocol.ICEServer) []protocol.ICEServer {
	var out []protocol.ICEServer
	for _, is := range servers {
		var urls []string
		for _, u := range is.URLs {
			if strings.HasPrefix(u, "stun:") || strings.HasPrefix(u, "stuns:") {
				urls = append(urls, u)
			}
		}
		if len(urls) > 0 {
			out = append(out, protocol.ICEServer{URLs: urls})
		}
	}
	return out
}

// portOf is the port of a TCP or UDP address, 0 for anything else.
func portOf(a net.Addr) int {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.Port
	case *net.TCPAddr:
		return a.Port
	}
	return 0
}
