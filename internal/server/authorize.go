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
