package ingest

import (
	"context"
	"net/netip"
)

// Action is what a client asks to do with a stream.
type Action string

const (
	Publish Action = "publish"
	Read    Action = "read"
)

// Request is one attempt to publish or read a stream, from any protocol.
type Request struct {
	Action Action
	Proto  string // "rtmp", "rtsp", "srt", "whip", "whep", "web", "pull"
	Stream string
	Token  string     // as the client gave it; "" when none
	Remote netip.Addr // the client's address (unmapped); zero for pulls
	ID     string     // the session, unique per server run (on_done pairs with it)
}

// Authorizer decides a Request in one order for every protocol: the
// token's grant, then the CIDR lists, then the on_publish/on_play hook.
// On success end must be called exactly once when the session ends (it
// fires on_done); it is never nil then. A nil Authorizer allows everything.
type Authorizer func(ctx context.Context, r Request) (end func(), err error)

// Authorize runs a (possibly nil) Authorizer.
func (a Authorizer) Authorize(ctx context.Context, r Request) (end func(), err error) {
	if a == nil {
		return func() {}, nil
	}
	end, err = a(ctx, r)
	if err != nil {
		return nil, err
	}
	if end == nil {
		end = func() {}
	}
	return end, nil
}
