package server

import (
	"context"

	"github.com/parley/parley/internal/ingest"
)

// authorize is the ingest.Authorizer every stream listener (RTSP, SRT, and
// in time RTMP, WHIP and WHEP) checks its clients with: the token's grant
// for the stream when auth is on (publish, or subscribe to read). CIDR
// lists and the on_publish/on_play/on_done hooks come after it, in that
// order.
func (s *Server) authorize(_ context.Context, r ingest.Request) (end func(), err error) {
	if s.auth != nil {
		c, err := s.tokenClaims(r.Token, "(in the "+r.Proto+" URL)")
		if err != nil {
			return nil, err
		}
		if err := streamGrant(c, r.Stream, r.Action == ingest.Publish); err != nil {
			return nil, err
		}
	}
	return func() {}, nil
}

// streamListener reports whether a stream listener (--rtmp, --rtsp, --srt
// at addr) starts: not when it is off, nor when media is off (it needs
// the SFU and the WHIP handler, which holds the stream names).
func (s *Server) streamListener(name, addr string) bool {
	if addr == "" || addr == "off" {
		return false
	}
	if s.sfu == nil {
		s.log.Warn(name+" is off because media is off (--media-udp off)", name, addr)
		return false
	}
	return true
}

// claimStream is the ingest.Claimer of every stream listener: the names
// are WHIP's, so one stream has one publisher over any protocol.
func (s *Server) claimStream(stream string, tracks int) (ingest.Claim, error) {
	c, err := s.whip.ClaimStream(stream, tracks)
	if err != nil {
		return nil, err
	}
	return c, nil
}
