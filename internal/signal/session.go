package signal

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/limit"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// session is one client, whatever its transport: it owns a room member,
// an outbox of encoded messages bounded in messages and in bytes, and rate
// limiters for messages and bytes.
type session struct {
	hub     *Hub
	host    string     // host the client reached us at, for ICE server URLs
	client  netip.Addr // the client's address as per-client limits count it
	release func()     // gives back the client's connection slot; set by register
	member  *room.Member
	media   MediaSession // in sfu rooms; guarded by mu
	grants  auth.Grants  // what the member may do in its room (set by join)

	out      chan []byte   // encoded messages for the client; shared slices, never modified
	queued   atomic.Int64  // bytes in out (see push and took)
	alive    atomic.Bool   // a message came in since the last keepalive tick (WebSocket)
	failed   chan struct{} // closed by fail: the transport must close the connection
	finished chan struct{} // closed by the transport when it has gone
	once     sync.Once
	reason   protocol.Message // the error that failed the session
	// abort, set by the WebSocket transport, closes the connection at once
	// unless the writer has gone (see armAbort); guarded by timerMu.
	abort    func()
	carry    []byte       // a message whose write failed, for the resuming connection (WebSocket writers only)
	greeting []byte       // resumed, written before anything queued (set by resume)
	again    [][]byte     // sent again after greeting: what the client did not get (set by resume)
	rp       replay       // what transports took, for a resume (replay.go)
	heard    atomic.Int64 // messages received from the client (replay.go)
	poll     bool         // carried by HTTP long-poll (resume there is by opening a session)

	// Resuming (resume.go); guarded by hub.mu.
	token      tokenKey // digest of the member's resume token, when hasToken
	hasToken   bool
	kick       func()        // makes the transport serving the session let go; nil when none
	handoff    chan struct{} // a resume waits on it for the transport to let go
	detached   bool          // no transport: waiting for a resume until grace fires
	grace      *time.Timer
	finishOnce sync.Once

	mu      sync.Mutex // serialises handle: HTTP posts may arrive concurrently
	msgs    limit.Bucket
	bytes   limit.Bucket
	strikes int // consecutive rate-limited messages

	timerMu   sync.Mutex
	joinTimer *time.Timer // closes a session that is in no room for JoinTimeout
	iceTimer  *time.Timer // sends fresh ICE servers while in a room (ICERefresh)
	stopped   bool        // the session has ended: no timer is armed again
}

func (h *Hub) newSession(host string, client netip.Addr) *session {
	s := &session{
		hub: h, host: host, client: client,
		out:      make(chan []byte, h.opts.Outbox),
		rp:       replay{max: h.opts.Replay, maxBytes: h.opts.ReplayBytes},
		failed:   make(chan struct{}),
		finished: make(chan struct{}),
	}
	now := h.opts.Now()
	s.msgs = limit.NewBucket(h.opts.RateLimit, float64(h.opts.RateBurst), now)
	s.bytes = limit.NewBucket(float64(h.opts.ByteRate), float64(h.opts.ByteBurst), now)
	s.member = &room.Member{ID: room.NewID(), Notify: s.notify}
	return s
}

// notify runs under the room's lock: queue, never block. Events come
// encoded (Wire, or the sender's peerInfo): one encoding shared by every
// receiver, however many there are.
func (s *session) notify(e room.Event) bool {
	if e.Kind == room.PeerLeft && s.hub.shutdown.Load() {
		// The server is going away: every member is, and will be back
		// after the restart; a peer-left now would read as someone
		// leaving the call.
		return true
	}
	b := e.Wire
	if b == nil {
		switch e.Kind {
		case room.PeerJoined:
			b = infoOf(e.From).joined
		case room.PeerLeft:
			b = infoOf(e.From).left
		case room.Signal:
			b = protocol.AppendSignal(make([]byte, 0, protocol.SignalLen(e.From.ID, e.Data)), e.From.ID, e.Data)
		}
	}
	return s.push(b)
}

// peerInfo is what a member's room-mates are told about it, encoded once
// when it joins (room.Member.Info).
type peerInfo struct {
	peer         protocol.Peer
	joined, left []byte // its peer-joined and peer-left messages
}

func newPeerInfo(p protocol.Peer) *peerInfo {
	return &peerInfo{peer: p,
		joined: mustJSON(protocol.Message{Type: protocol.TypePeerJoined, ID: p.ID, Name: p.Name,
			Identity: p.Identity, Verified: p.Verified, Host: p.Host}),
		left: mustJSON(protocol.Message{Type: protocol.TypePeerLeft, ID: p.ID})}
}

func hasHost(members []*room.Member) bool {
	for _, p := range members {
		if infoOf(p).peer.Host {
			return true
		}
	}
	return false
}

func infoOf(m *room.Member) *peerInfo {
	if pi, ok := m.Info.(*peerInfo); ok {
		return pi
	}
	return newPeerInfo(protocol.Peer{ID: m.ID, Name: m.Name}) // a member of another transport
}

// push queues an encoded message; an outbox full in messages or in bytes
// fails the session, because a client that cannot keep up must not slow
// the others, nor make the server hold its backlog.
func (s *session) push(b []byte) bool {
	n := int64(len(b))
	if s.queued.Add(n) > int64(s.hub.opts.OutboxBytes) {
		s.queued.Add(-n)
		s.fail(protocol.CodeSlowConsumer, "you were not reading your messages fast enough")
		return false
	}
	select {
	case s.out <- b:
		return true
	default:
		s.queued.Add(-n)
		s.fail(protocol.CodeSlowConsumer, "you were not reading your messages fast enough")
		return false
	}
}

// took accounts for a message the transport has taken out of the outbox.
func (s *session) took(b []byte) {
	s.queued.Add(-int64(len(b)))
	s.rp.took(b)
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
		s.armAbort()
		go s.hub.opts.Rooms.Leave(s.member) // not inline: we may hold room locks
		go s.hub.dropIfDetached(s)          // no transport will end it
	})
}

// stuckWriteTimeout bounds how long a session that failed may take to go.
const stuckWriteTimeout = 5 * time.Second

// armAbort makes sure a failed session's connection goes: a writer stuck
// in a write to a client that stopped reading (the slow consumers of a
// chat flood) would hold its goroutines, its socket buffers and its
// client's connection slot for as long as that client liked.
func (s *session) armAbort() {
	s.timerMu.Lock() // a resume sets abort anew for its connection
	abort := s.abort
	s.timerMu.Unlock()
	if abort != nil {
		time.AfterFunc(stuckWriteTimeout, abort)
	}
}

func (s *session) isFailed() bool {
	select {
	case <-s.failed:
		return true
	default:
		return false
	}
}

// armJoinDeadline (re)starts the join deadline: on connecting and on
// leaving a room. A client that holds a connection without being in a room
// is closed after JoinTimeout.
func (s *session) armJoinDeadline() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	switch {
	case s.stopped:
	case s.joinTimer == nil:
		s.joinTimer = time.AfterFunc(s.hub.opts.JoinTimeout, s.joinDeadline)
	default:
		s.joinTimer.Reset(s.hub.opts.JoinTimeout)
	}
}

func (s *session) joinDeadline() {
	if s.member.Room() == nil {
		s.fail(protocol.CodeJoinTimeout, "no room joined within "+s.hub.opts.JoinTimeout.String()+"; closing the connection")
	}
}

// joined stops the join deadline and starts the ICE refresh.
func (s *session) joined() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.joinTimer != nil {
		s.joinTimer.Stop()
	}
	if d := s.hub.opts.ICERefresh; d > 0 && !s.stopped {
		if s.iceTimer == nil {
			s.iceTimer = time.AfterFunc(d, s.refreshICE)
		} else {
			s.iceTimer.Reset(d)
		}
	}
}

// refreshICE sends the member fresh ICE servers (new TURN credentials)
// before the ones it holds expire, and comes again while it stays in the
// room. It runs on the timer's goroutine, which ends with it; leaving and
// unregister stop the timer.
func (s *session) refreshICE() {
	if s.member.Room() == nil || s.isFailed() {
		return
	}
	if list := s.hub.opts.ICEServers(s.host, s.member.ID); len(list) > 0 {
		s.send(protocol.Message{Type: protocol.TypeICEServers, ICEServers: list})
	}
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if !s.stopped && s.member.Room() != nil {
		s.iceTimer.Reset(s.hub.opts.ICERefresh)
	}
}

// left stops the ICE refresh and re-arms the join deadline.
func (s *session) left() {
	s.timerMu.Lock()
	if s.iceTimer != nil {
		s.iceTimer.Stop()
	}
	s.timerMu.Unlock()
	s.armJoinDeadline()
}

// stopTimers ends the session's timers for good (unregister).
func (s *session) stopTimers() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	s.stopped = true
	for _, t := range []*time.Timer{s.joinTimer, s.iceTimer} {
		if t != nil {
			t.Stop()
		}
	}
}

// handle processes one raw client message. next, when not nil, is the
// session a resume took over: the connection serves it from now on.
func (s *session) handle(raw []byte) (next *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hub
	h.received.Inc()
	s.heard.Add(1)
	if s.isFailed() {
		return nil // closing: nothing more is done for this client
	}
	now := h.opts.Now()
	if !s.msgs.Take(1, now) || !s.bytes.Take(float64(len(raw)), now) {
		s.strikes++
		if s.strikes == 1 {
			s.sendError(protocol.CodeRateLimited, "too many messages or bytes; slow down or you will be disconnected")
		}
		if s.strikes > h.opts.RateBurst {
			s.fail(protocol.CodeRateLimited, "message flood; disconnected")
		}
		return nil
	}
	s.strikes = 0
	if len(raw) > h.opts.MaxMessage {
		s.sendError(protocol.CodeTooLarge, "message is larger than the limit")
		return nil
	}
	if to, data, ok := protocol.DecodeSignal(raw); ok { // the hot path
		s.signal(to, data)
		return nil
	}
	m, err := protocol.Decode(raw)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			s.sendError(pe.Code, pe.Msg)
		} else {
			s.sendError(protocol.CodeBadJSON, err.Error())
		}
		return nil
	}
	if m.Got != nil && m.Type != protocol.TypeResume {
		s.rp.ack(*m.Got) // join or ping: the client counts (replay.go)
	}
	switch m.Type {
	case protocol.TypeJoin:
		s.join(m)
	case protocol.TypeResume:
		return s.resume(m)
	case protocol.TypeSignal:
		s.signal(m.To, m.Data)
	case protocol.TypeModerate:
		s.moderate(m)
	case protocol.TypeMedia:
		if s.media == nil {
			s.sendError(protocol.CodeNotSFU, "media messages go to the server only in sfu rooms")
			return nil
		}
		s.media.Handle(m.Data)
	case protocol.TypeLeave:
		s.closeMediaLocked()
		if r, ok := h.opts.Rooms.Leave(s.member); ok {
			h.revokeToken(s)
			s.left()
			s.send(protocol.Message{Type: protocol.TypeLeft, Room: r.Name})
		} else {
			s.sendError(protocol.CodeNotInRoom, "you are not in a room")
		}
	case protocol.TypePing:
		got := s.heard.Load()
		s.send(protocol.Message{Type: protocol.TypePong, Got: &got})
	}
	return nil
}

var errRoomRate = errors.New("too many new rooms from this address")

func (s *session) join(m protocol.Message) {
	h := s.hub
	if s.member.Room() != nil {
		s.sendError(protocol.CodeAlreadyJoined, "you are already in room "+s.member.Room().Name+"; leave first")
		return
	}
	me := protocol.Peer{ID: s.member.ID, Name: m.Name}
	grantsHost := false // with tokens, the grant decides who hosts
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
		// Who the member is comes from the token, and peers are told it
		// is verified; the name shown is the token's when it has one.
		me.Identity, me.Verified = claims.Identity, true
		if claims.Name != "" {
			me.Name = claims.Name
		}
		if me.Name == "" {
			me.Name = claims.Identity
		}
		s.grants = claims.Grants
		grantsHost = claims.Grants.Publish || claims.Grants.Admin
	}
	if len(me.Name) > protocol.MaxNameLen {
		me.Name = strings.ToValidUTF8(me.Name[:protocol.MaxNameLen], "") // a token's name may be longer
	}
	if me.Name == "" {
		me.Name = "guest-" + s.member.ID[:4]
	}
	s.member.Name = me.Name
	mode := room.Mode(h.opts.Mode(m.Room))
	if mode == "" {
		mode = room.Mode(m.Mode)
	}
	if mode == "" || (mode == room.SFU && h.opts.Media == nil) {
		mode = room.P2P
	}
	r, peers, err := h.opts.Rooms.JoinIf(m.Room, mode, h.opts.Capacity(m.Room, string(mode)), s.member, func(created bool, peers []*room.Member) error {
		if created && !h.newRooms.Allow(s.client, h.opts.Now()) {
			return errRoomRate
		}
		if h.opts.Auth != nil {
			me.Host = grantsHost
		} else {
			// Open server: everyone has every grant, so grants cannot tell
			// the host; the first member present that asks for it is.
			me.Host = m.Host && !hasHost(peers)
		}
		s.member.Info = newPeerInfo(me)
		return nil
	})
	switch {
	case errors.Is(err, errRoomRate):
		s.sendError(protocol.CodeTooManyRooms, "your address has opened too many new rooms in the last minute; join an existing one or try again later")
		return
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
	s.joined()
	list := make([]protocol.Peer, len(peers))
	for i, p := range peers {
		list[i] = infoOf(p).peer
	}
	s.push(mustJSON(protocol.Joined{Type: protocol.TypeJoined, Room: r.Name, ID: s.member.ID, Name: me.Name,
		Mode: string(r.Mode), Peers: list, ICEServers: h.opts.ICEServers(s.host, s.member.ID), Grants: wireGrants(s.grants),
		Identity: me.Identity, Verified: me.Verified, Host: me.Host, Resume: h.issueToken(s),
		Nodes: h.nodes(), MediaNode: s.mediaNode(r)}))
	s.startMedia(r)
}

// mediaNode names the node placed to carry an sfu room's media ("" this
// one, or a p2p room).
func (s *session) mediaNode(r *room.Room) string {
	if r.Mode == room.SFU && s.hub.opts.MediaNode != nil {
		return s.hub.opts.MediaNode(r.Name)
	}
	return ""
}

// startMedia starts the member's media session in an sfu room; s.mu is
// held.
func (s *session) startMedia(r *room.Room) {
	h := s.hub
	if r.Mode != room.SFU || h.opts.Media == nil {
		return
	}
	ms, err := h.opts.Media.Join(r.Name, s.member.ID, s.grants, func(m protocol.Message) { s.push(mustJSON(m)) })
	if err != nil {
		h.log.Warn("media join failed", "room", r.Name, "member", s.member.ID, "err", err)
		s.sendError(protocol.CodeNotSFU, "the server could not start media for this room: "+err.Error())
		return
	}
	s.media = ms
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

// signal relays data to member to (or everyone); data may be the reader's
// buffer, so it is copied into the wire form here.
func (s *session) signal(to string, data []byte) {
	h := s.hub
	// Encoded once here; a message to everyone shares this one slice
	// among all its receivers' outboxes.
	wire := protocol.AppendSignal(make([]byte, 0, protocol.SignalLen(s.member.ID, data)), s.member.ID, data)
	_, err := h.opts.Rooms.RouteWire(s.member, to, data, wire)
	switch {
	case errors.Is(err, room.ErrNotInRoom):
		s.sendError(protocol.CodeNotInRoom, "join a room before sending signals")
	case errors.Is(err, room.ErrNoSuchPeer):
		s.sendError(protocol.CodeNoSuchPeer, "no member "+to+" in your room")
	default:
		h.relayed.Inc()
	}
}

// resume answers a resume message on a connection that is in no room: on
// success the connection's transport serves the session returned.
func (s *session) resume(m protocol.Message) *session {
	switch {
	case s.poll:
		s.sendError(protocol.CodeBadField, "over HTTP, resume by opening a new session: POST /api/session with the resume message as the body")
		return nil
	case s.member.Room() != nil:
		s.sendError(protocol.CodeAlreadyJoined, "you are in room "+s.member.Room().Name+"; resume on a new connection")
		return nil
	}
	next, token, err := s.hub.claim(m.Resume)
	if err == nil {
		err = next.replayAfter(m.Got)
	} else if s.moveHere(m.Resume) == nil { // a member of another node moved here (move.go)
		s.heard.Add(-1) // the client does not count its resume
		return nil
	}
	if err != nil {
		s.sendError(protocol.CodeResumeFailed, "that session cannot be resumed ("+err.Error()+"); join again")
		return nil
	}
	next.greeting = resumedMessage(next, token)
	return next
}
