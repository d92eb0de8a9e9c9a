package signal

import (
	"errors"
	"sync"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// session is one client, whatever its transport: it owns a room member,
// a bounded outbox of encoded messages, and a rate limiter.
type session struct {
	hub    *Hub
	host   string // host the client reached us at, for ICE server URLs
	member *room.Member
	media  MediaSession // in sfu rooms; guarded by mu
	grants auth.Grants  // what the member may do in its room (set by join)

	out      chan []byte   // encoded messages for the client
	failed   chan struct{} // closed by fail: the transport must close the connection
	finished chan struct{} // closed by the transport when it has gone
	once     sync.Once
	reason   protocol.Message // the error that failed the session

	mu      sync.Mutex // serialises handle: HTTP posts may arrive concurrently
	bucket  tokenBucket
	strikes int // consecutive rate-limited messages
}

func (h *Hub) newSession(host string) *session {
	s := &session{
		hub: h, host: host,
		out:      make(chan []byte, h.opts.Outbox),
		failed:   make(chan struct{}),
		finished: make(chan struct{}),
		bucket:   newTokenBucket(h.opts.RateLimit, h.opts.RateBurst, h.opts.Now()),
	}
	s.member = &room.Member{ID: room.NewID(), Notify: s.notify}
	return s
}

// notify runs under the room's lock: encode, queue, never block.
func (s *session) notify(e room.Event) bool {
	var b []byte
	switch e.Kind {
	case room.PeerJoined:
		b = mustJSON(protocol.Message{Type: protocol.TypePeerJoined, ID: e.From.ID, Name: e.From.Name})
	case room.PeerLeft:
		b = mustJSON(protocol.Message{Type: protocol.TypePeerLeft, ID: e.From.ID})
	case room.Signal:
		b = protocol.AppendSignal(make([]byte, 0, len(e.Data)+48), e.From.ID, e.Data)
	}
	return s.push(b)
}

// push queues an encoded message; a full outbox fails the session, because
// a client that cannot keep up must not slow the others.
func (s *session) push(b []byte) bool {
	select {
	case s.out <- b:
		return true
	default:
		s.fail(protocol.CodeSlowConsumer, "you were not reading your messages fast enough")
		return false
	}
}

func (s *session) send(m protocol.Message) { s.push(mustJSON(m)) }

func (s *session) sendError(code, msg string) {
	s.hub.errors.Inc(code)
	s.send(protocol.ErrorMessage(code, msg))
}

// fail marks the session for closing with a final error; the transport
// delivers the error, closes, and takes the member out of its room. fail
// may run under room locks (from notify), so it only signals.
func (s *session) fail(code, msg string) {
	s.once.Do(func() {
		s.hub.errors.Inc(code)
		s.reason = protocol.ErrorMessage(code, msg)
		close(s.failed)
		go s.hub.opts.Rooms.Leave(s.member) // not inline: we may hold room locks
	})
}

func (s *session) isFailed() bool {
	select {
	case <-s.failed:
		return true
	default:
		return false
	}
}

// handle processes one raw client message.
func (s *session) handle(raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hub
	h.received.Inc()
	if !s.bucket.take(h.opts.Now()) {
		s.strikes++
		if s.strikes == 1 {
			s.sendError(protocol.CodeRateLimited, "too many messages; slow down or you will be disconnected")
		}
		if s.strikes > h.opts.RateBurst {
			s.fail(protocol.CodeRateLimited, "message flood; disconnected")
		}
		return
	}
	s.strikes = 0
	if len(raw) > h.opts.MaxMessage {
		s.sendError(protocol.CodeTooLarge, "message is larger than the limit")
		return
	}
	m, err := protocol.Decode(raw)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			s.sendError(pe.Code, pe.Msg)
		} else {
			s.sendError(protocol.CodeBadJSON, err.Error())
		}
		return
	}
	switch m.Type {
	case protocol.TypeJoin:
		s.join(m)
	case protocol.TypeSignal:
		s.signal(m)
	case protocol.TypeModerate:
		s.moderate(m)
	case protocol.TypeMedia:
		if s.media == nil {
			s.sendError(protocol.CodeNotSFU, "media messages go to the server only in sfu rooms")
			return
		}
		s.media.Handle(m.Data)
	case protocol.TypeLeave:
		s.closeMediaLocked()
		if r, ok := h.opts.Rooms.Leave(s.member); ok {
			s.send(protocol.Message{Type: protocol.TypeLeft, Room: r.Name})
		} else {
			s.sendError(protocol.CodeNotInRoom, "you are not in a room")
		}
	case protocol.TypePing:
		s.send(protocol.Message{Type: protocol.TypePong})
	}
}

func (s *session) join(m protocol.Message) {
	h := s.hub
	if s.member.Room() != nil {
		s.sendError(protocol.CodeAlreadyJoined, "you are already in room "+s.member.Room().Name+"; leave first")
		return
	}
	name := m.Name
	s.grants = auth.AllGrants
	if h.opts.Auth != nil {
		claims, err := h.opts.Auth.Verify(m.Token, h.opts.Now())
		switch {
		case m.Token == "":
			s.sendError(protocol.CodeUnauthorized, "this server needs a token to join")
			return
		case err != nil:
			s.sendError(protocol.CodeUnauthorized, "token rejected: "+err.Error())
			return
		case !claims.AllowsRoom(m.Room):
			s.sendError(protocol.CodeForbidden, "your token does not grant room "+m.Room)
			return
		}
		if name == "" {
			name = claims.Identity
		}
		s.grants = claims.Grants
	}
	if name == "" {
		name = "guest-" + s.member.ID[:4]
	}
	s.member.Name = name
	mode := room.Mode(h.opts.Mode(m.Room))
	if mode == "" {
		mode = room.Mode(m.Mode)
	}
	if mode == "" || (mode == room.SFU && h.opts.Media == nil) {
		mode = room.P2P
	}
	r, peers, err := h.opts.Rooms.Join(m.Room, mode, h.opts.Capacity(m.Room, string(mode)), s.member)
	switch {
	case errors.Is(err, room.ErrFull):
		h.errors.Inc("full")
		s.send(protocol.Message{Type: protocol.TypeFull, Room: m.Room})
		return
	case errors.Is(err, room.ErrTooManyRooms):
		s.sendError(protocol.CodeServerFull, "the server has too many rooms open; try again later")
		return
	case err != nil:
		s.sendError(protocol.CodeAlreadyJoined, err.Error())
		return
	}
	h.joins.Inc()
	list := make([]protocol.Peer, len(peers))
	for i, p := range peers {
		list[i] = protocol.Peer{ID: p.ID, Name: p.Name}
	}
	s.push(mustJSON(protocol.Joined{Type: protocol.TypeJoined, Room: r.Name, ID: s.member.ID, Name: name,
		Mode: string(r.Mode), Peers: list, ICEServers: h.opts.ICEServers(s.host, s.member.ID), Grants: wireGrants(s.grants)}))
	if r.Mode == room.SFU && h.opts.Media != nil {
		ms, err := h.opts.Media.Join(r.Name, s.member.ID, s.grants, func(m protocol.Message) { s.push(mustJSON(m)) })
		if err != nil {
			h.log.Warn("media join failed", "room", r.Name, "member", s.member.ID, "err", err)
			s.sendError(protocol.CodeNotSFU, "the server could not start media for this room: "+err.Error())
			return
		}
		s.media = ms
	}
}

// closeMediaLocked ends the member's media session; s.mu is held.
func (s *session) closeMediaLocked() {
	if s.media != nil {
		s.media.Close()
		s.media = nil
	}
}

// closeMedia is closeMediaLocked for the transports' cleanup.
func (s *session) closeMedia() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeMediaLocked()
}

func (s *session) signal(m protocol.Message) {
	h := s.hub
	_, err := h.opts.Rooms.Route(s.member, m.To, m.Data)
	switch {
	case errors.Is(err, room.ErrNotInRoom):
		s.sendError(protocol.CodeNotInRoom, "join a room before sending signals")
	case errors.Is(err, room.ErrNoSuchPeer):
		s.sendError(protocol.CodeNoSuchPeer, "no member "+m.To+" in your room")
	default:
		h.relayed.Inc()
	}
}

// tokenBucket is a small rate limiter: rate tokens/s, up to burst.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newTokenBucket(rate float64, burst int, now time.Time) tokenBucket {
	return tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

func (b *tokenBucket) take(now time.Time) bool {
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	b.last = now
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
