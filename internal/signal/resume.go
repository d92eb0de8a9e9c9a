package signal

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"time"

	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// Sessions that survive a dropped connection (issue #14).
//
// A member in a room holds a resume token (joined.resume): 128 random
// bits, known only to the connection it was sent on. When that connection
// drops, the session is detached instead of ended: the member stays in its
// room, messages for it queue in its outbox (bounded as ever: an overflow
// fails it as a slow consumer, and it leaves), and its connection slot
// stays taken, so detached members count against the per-client and
// server limits. A new connection whose first message is
// {"type":"resume","resume":"<token>"} within ResumeGrace takes the
// session over: same member, same room, the queue delivered in order, no
// peer-left or peer-joined for anyone. After the grace it leaves as a
// closed connection's member always did.
//
// A token works once: resumed carries the next one. The hub keeps only
// SHA-256 digests of tokens (a lookup's timing tells nothing of the
// token), and compares them in constant time besides. Tokens are never
// logged.
//
// A connection that has not dropped as far as the server knows (a laptop
// that changed networks leaves a half-open TCP connection behind) is
// taken over all the same: the resume kicks it, and waits for its
// transport to let go of the session.

type tokenKey [sha256.Size]byte

func keyOf(token string) tokenKey { return sha256.Sum256([]byte(token)) }

var (
	errResume = errors.New("unknown, used or expired token")
	errReplay = errors.New("more was lost than the server keeps")
)

// issueToken gives s a new resume token, revoking its old one, and returns
// it; "" when resuming is off.
func (h *Hub) issueToken(s *session) string {
	if h.opts.ResumeGrace < 0 {
		return ""
	}
	t := ""
	if len(h.opts.MoveKey) > 0 {
		t = h.sealToken(s) // other nodes can check it (move.go)
	}
	if t == "" {
		t = room.NewSecret()
	}
	k := keyOf(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.hasToken {
		delete(h.tokens, s.token)
	}
	s.token, s.hasToken = k, true
	h.tokens[k] = s
	return t
}

// revokeToken forgets s's token (leave, unregister).
func (h *Hub) revokeToken(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.revokeLocked(s)
}

func (h *Hub) revokeLocked(s *session) {
	if s.hasToken {
		delete(h.tokens, s.token)
		s.hasToken = false
	}
}

// attach records that a transport now serves s; kick makes that transport
// let go (close the connection, forget the HTTP session).
func (h *Hub) attach(s *session, kick func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.kick = kick
}

// connEnded is called by a transport when it stops serving s: a resume in
// progress gets the session; a member in a room is kept for ResumeGrace;
// anything else ends.
func (h *Hub) connEnded(s *session) {
	h.mu.Lock()
	s.kick = nil
	if ch := s.handoff; ch != nil {
		s.handoff = nil
		h.mu.Unlock()
		close(ch)
		return
	}
	if s.hasToken && !h.closing && !s.isFailed() && s.member.Room() != nil {
		s.detached = true
		s.grace = time.AfterFunc(h.opts.ResumeGrace, func() { h.expire(s) })
		h.mu.Unlock()
		h.log.Debug("member detached, awaiting resume", "member", s.member.ID, "grace", h.opts.ResumeGrace)
		return
	}
	h.mu.Unlock()
	h.finish(s)
}

// expire ends a detached session whose grace ran out.
func (h *Hub) expire(s *session) {
	h.mu.Lock()
	was := s.detached
	s.detached = false
	h.mu.Unlock()
	if was {
		h.log.Debug("member did not resume in time", "member", s.member.ID)
		h.finish(s)
	}
}

// dropIfDetached ends a detached session that failed (its queue overflowed,
// a moderator removed it, the server is closing): no transport will.
func (h *Hub) dropIfDetached(s *session) {
	h.mu.Lock()
	was := s.detached
	if was {
		s.detached = false
		s.grace.Stop()
	}
	h.mu.Unlock()
	if was {
		h.finish(s)
	}
}

// finish ends s for good: out of its room and the hub; once.
func (h *Hub) finish(s *session) {
	s.finishOnce.Do(func() {
		h.unregister(s)
		close(s.finished)
	})
}

// claim finds the session token belongs to and takes it from whatever
// transport serves it, returning it with its next token. The caller must
// attach a transport to it.
func (h *Hub) claim(token string) (*session, string, error) {
	if h.opts.ResumeGrace < 0 || token == "" {
		return nil, "", errResume
	}
	k := keyOf(token)
	h.mu.Lock()
	s := h.tokens[k]
	if s == nil || subtle.ConstantTimeCompare(s.token[:], k[:]) != 1 || s.isFailed() || h.closing {
		h.mu.Unlock()
		return nil, "", errResume
	}
	h.revokeLocked(s) // one use
	if s.detached {
		if !s.grace.Stop() {
			h.mu.Unlock() // the grace ran out a moment ago: expire has it
			return nil, "", errResume
		}
		s.detached = false
		h.mu.Unlock()
	} else {
		ch := make(chan struct{})
		s.handoff = ch
		kick := s.kick
		h.mu.Unlock()
		if kick != nil {
			kick()
		}
		<-ch // the transport lets go once its goroutines have ended
	}
	if s.isFailed() || s.member.Room() == nil {
		h.finish(s)
		return nil, "", errResume
	}
	next := h.issueToken(s)
	h.resumes.Inc()
	return s, next, nil
}

// replayAfter sets what a resume sends again: the messages after the
// first got (nil: a client that counts nothing, which gets only the one
// whose write failed, as before). When some of them are no longer kept,
// the member, just claimed, leaves: its client joins afresh.
func (s *session) replayAfter(got *int64) error {
	if got == nil {
		return nil
	}
	again, ok := s.rp.since(*got)
	if !ok {
		s.hub.log.Debug("resume refused: too much to replay", "member", s.member.ID)
		s.hub.finish(s)
		return errReplay
	}
	s.carry, s.again = nil, again // the carried message is among them
	return nil
}

// resumedMessage is the answer to a successful resume.
func resumedMessage(s *session, token string) []byte {
	r := s.member.Room()
	name := ""
	if r != nil {
		name = r.Name
	}
	got := s.heard.Load()
	return mustJSON(protocol.Message{Type: protocol.TypeResumed, Room: name, ID: s.member.ID, Name: s.member.Name, Resume: token, Got: &got, Nodes: s.hub.nodes()})
}

// Detached is the number of members waiting for their client to resume.
func (h *Hub) Detached() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for s := range h.sessions {
		if s.detached {
			n++
		}
	}
	return n
}
