// Package signal is Parley's signaling plane: the session logic that turns
// client messages into room operations, and the two transports that carry
// it, WebSocket (/ws) and HTTP long-poll (/api/session). Both share one
// session type, so they have the same semantics by construction.
package signal

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/clientip"
	"github.com/parley/parley/internal/limit"
	"github.com/parley/parley/internal/metrics"
	"github.com/parley/parley/internal/origin"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// Options configure a Hub. Zero values are replaced by safe defaults.
type Options struct {
	MaxMessage   int           // bytes per message (default 64 KiB)
	RateLimit    float64       // messages/s sustained per connection (default 50)
	RateBurst    int           // burst size (default 200)
	Outbox       int           // queued messages per member before it is cut off (default 256)
	OutboxBytes  int           // queued bytes per member before it is cut off (default 1 MiB)
	ByteRate     int           // bytes/s sustained per connection (default 256 KiB)
	ByteBurst    int           // byte burst (default 1 MiB; at least MaxMessage)
	PingInterval time.Duration // WebSocket keepalive (default 5 s)
	PollTimeout  time.Duration // long-poll wait (default 25 s)
	SessionIdle  time.Duration // HTTP sessions idle longer are reaped (default 60 s)
	MaxSessions  int           // connections of both kinds at once (default 100000)
	ConnsPerIP   int           // connections of both kinds per client address (default 200; < 0: no limit)
	RoomsPerIP   int           // rooms one client address may create per minute (default 60; < 0: no limit)
	JoinTimeout  time.Duration // a connection not in a room this long is closed (default 10 s)
	// Replay and ReplayBytes bound what is kept per member for a resume
	// to send again: the messages the client may not have received
	// (default 64 and 64 KiB per member; Replay < 0: none, and a resume that says
	// what it got is refused unless it got everything). See replay.go.
	Replay      int
	ReplayBytes int
	// ResumeGrace is how long a member whose connection dropped is kept
	// for its client to resume it (default 15 s; < 0: no resuming, the
	// member leaves at once). See resume.go.
	ResumeGrace time.Duration
	// ClientIP tells which client a request comes from, for the per-client
	// limits (keyed by clientip.Key); nil uses the connection's peer
	// address and believes no forwarding header.
	ClientIP *clientip.Resolver
	Auth     *auth.Verifier // when set, join needs a token
	// Origins says which web pages may use the WebSocket and HTTP
	// transports (nil: only the loopback names' pages and non-browsers).
	Origins *origin.Policy

	// Mode and Capacity give a new room's settings; Mode returns "" when the
	// room is not configured, and then the join's own mode (or p2p) is used.
	Capacity func(room, mode string) int
	Mode     func(room string) string
	// ICEServers returns the STUN/TURN servers handed to a member in joined;
	// host is the host name the client reached Parley at.
	ICEServers func(host, memberID string) []protocol.ICEServer
	// ICERefresh is how often a member in a room is sent fresh ICE servers
	// (an ice-servers message), e.g. 3/4 of the TURN credentials' lifetime;
	// 0 never.
	ICERefresh time.Duration

	// Media runs the media of sfu-mode rooms; nil makes every room p2p.
	Media MediaRooms

	// On a node of a cluster (nil alone): Nodes lists the other nodes'
	// base URLs, least loaded first, for joined's and resumed's "nodes"
	// (where a client goes when this node is unreachable) and for
	// server-shutdown's "url" (where a drained node sends its clients);
	// MediaNode names the node placed to carry a group room's media
	// (joined's "mediaNode"; "" this one).
	Nodes     func() []string
	MediaNode func(room string) string
	// MoveKey (see MoveKey), Node (this node's ID) and Adopt let a member
	// of another node move here when its client resumes here with a token
	// that node sealed (move.go): Adopt puts m in the place of member id
	// of another node, in its room, when valid accepts that member and the
	// node it is at. Alone: nil, and tokens are plain random.
	MoveKey []byte
	Node    string
	Adopt   func(id string, m *room.Member, valid func(old *room.Member, node string) bool) (*room.Room, error)

	Rooms   *room.Manager
	Metrics *metrics.Registry
	Logger  *slog.Logger
	Now     func() time.Time
}

func (o *Options) fill() {
	if o.MaxMessage <= 0 {
		o.MaxMessage = 64 << 10
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 50
	}
	if o.RateBurst <= 0 {
		o.RateBurst = 200
	}
	if o.Outbox <= 0 {
		o.Outbox = 256
	}
	if o.OutboxBytes <= 0 {
		o.OutboxBytes = 1 << 20
	}
	if o.ByteRate <= 0 {
		o.ByteRate = 256 << 10
	}
	if o.ByteBurst <= 0 {
		o.ByteBurst = 1 << 20
	}
	if o.ByteBurst < o.MaxMessage {
		o.ByteBurst = o.MaxMessage // else the largest message could never pass
	}
	if o.OutboxBytes < 2*o.MaxMessage {
		o.OutboxBytes = 2 * o.MaxMessage // room for a relayed message and a reply
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 5 * time.Second
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = 25 * time.Second
	}
	if o.SessionIdle <= 0 {
		o.SessionIdle = 60 * time.Second
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 100000
	}
	if o.ConnsPerIP == 0 {
		o.ConnsPerIP = 200
	}
	if o.RoomsPerIP == 0 {
		o.RoomsPerIP = 60
	}
	if o.ResumeGrace == 0 {
		o.ResumeGrace = 15 * time.Second
	}
	if o.Replay == 0 {
		o.Replay = 64
	}
	if o.ReplayBytes <= 0 {
		o.ReplayBytes = 64 << 10
	}
	if o.JoinTimeout <= 0 {
		o.JoinTimeout = 10 * time.Second
	}
	if o.ClientIP == nil {
		o.ClientIP = clientip.New(nil)
	}
	if o.Origins == nil {
		o.Origins = origin.New(nil, nil)
	}
	if o.Capacity == nil {
		o.Capacity = func(string, string) int { return 16 }
	}
	if o.Mode == nil {
		o.Mode = func(string) string { return "" }
	}
	if o.ICEServers == nil {
		o.ICEServers = func(string, string) []protocol.ICEServer { return []protocol.ICEServer{} }
	}
	if o.Rooms == nil {
		o.Rooms = room.NewManager(10000)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// MediaRooms gives members of sfu-mode rooms a media session with the
// server, limited to what the member's grants allow. send delivers server
// messages to the member and must not block.
type MediaRooms interface {
	Join(room, memberID string, g auth.Grants, send func(protocol.Message)) (MediaSession, error)
}

// MediaSession is one member's media connection with the server.
type MediaSession interface {
	Handle(data json.RawMessage) // a "media" message from the member
	// Mute holds the tracks of another member of the room (a moderator's
	// mute; see moderate.go) and returns the "muted" messages to tell it.
	Mute(memberID, track string) []protocol.Message
	Close()
}

// Hub serves signaling sessions over both transports.
type Hub struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[*session]struct{}
	polls    map[string]*pollSession
	tokens   map[tokenKey]*session // resume tokens' digests
	closing  bool
	// shutdown is closing, readable under room locks: members leaving
	// then tell nobody (everyone is going, and will come back).
	shutdown atomic.Bool

	perIP    *limit.Conns // connections per client address
	newRooms *limit.Rate  // rooms created per client address per minute

	connections *metrics.Counter
	received    *metrics.Counter
	relayed     *metrics.Counter
	joins       *metrics.Counter
	resumes     *metrics.Counter
	moves       *metrics.Counter
	errors      *metrics.CounterVec

	ctx    context.Context // ends the reaper and all sessions' writers
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewHub makes a hub. Close it to end its sessions and background work.
func NewHub(o Options) *Hub {
	o.fill()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		opts: o, log: o.Logger.With("plane", "signal"),
		sessions: map[*session]struct{}{}, polls: map[string]*pollSession{}, tokens: map[tokenKey]*session{},
		perIP: limit.NewConns(o.ConnsPerIP), newRooms: limit.NewRate(o.RoomsPerIP, time.Minute),
		connections: o.Metrics.Counter("parley_signal_connections_total", "Signaling sessions opened (WebSocket and HTTP)."),
		received:    o.Metrics.Counter("parley_signal_messages_received_total", "Signaling messages received from clients."),
		relayed:     o.Metrics.Counter("parley_signal_messages_relayed_total", "Signal messages relayed to another member."),
		joins:       o.Metrics.Counter("parley_signal_joins_total", "Successful room joins."),
		resumes:     o.Metrics.Counter("parley_signal_resumes_total", "Members taken over by a new connection (resume)."),
		moves:       o.Metrics.Counter("parley_signal_moves_total", "Members of another node of the cluster taken over here by a resume (move.go)."),
		errors:      o.Metrics.CounterVec("parley_signal_errors_total", "Errors sent to clients, by code.", "code"),
		ctx:         ctx, cancel: cancel,
	}
	o.Metrics.GaugeFunc("parley_signal_sessions", "Open signaling sessions.", func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(len(h.sessions))
	})
	o.Metrics.GaugeFunc("parley_signal_detached", "Members whose connection dropped, kept for a resume.", func() float64 { return float64(h.Detached()) })
	o.Metrics.GaugeFunc("parley_rooms", "Open rooms.", func() float64 { r, _ := o.Rooms.Counts(); return float64(r) })
	o.Metrics.GaugeFunc("parley_room_members", "Members in rooms.", func() float64 { _, m := o.Rooms.Counts(); return float64(m) })
	h.wg.Add(1)
	go h.reapIdlePolls()
	return h
}

// shutdownRetry is when clients are told to reconnect after a graceful
// shutdown (server-shutdown's retryMs): about what a restart takes. Each
// client adds its own jitter, so a thousand do not come back at once.
const shutdownRetry = time.Second

// drainRetry is server-shutdown's retryMs when it names another node of
// the cluster: that node is up, only the jitter spreads the clients out.
const drainRetry = 250 * time.Millisecond

// nodes are the cluster's other nodes (Options.Nodes), none alone.
func (h *Hub) nodes() []string {
	if h.opts.Nodes == nil {
		return nil
	}
	return h.opts.Nodes()
}

// pollGoodbye is how long a shutdown waits for HTTP members to poll for
// their goodbye.
const pollGoodbye = time.Second

// Close tells every session the server is going away (server-shutdown,
// then the shutting-down error), waits (bounded by
// ctx) for the WebSocket close frames to go out, and stops the hub.
func (h *Hub) Close(ctx context.Context) {
	h.mu.Lock()
	h.closing = true
	h.shutdown.Store(true)
	all := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	bye := protocol.Message{Type: protocol.TypeServerShutdown, RetryMs: int(shutdownRetry / time.Millisecond)}
	if nodes := h.nodes(); len(nodes) > 0 {
		// A drained node of a cluster: go to the least loaded other node
		// now (a restart is not awaited there).
		bye.URL, bye.RetryMs = nodes[0], int(drainRetry/time.Millisecond)
	}
	goodbye := mustJSON(bye)
	for _, s := range all {
		s.push(goodbye) // drained before the error and the close frame
		s.fail(protocol.CodeShuttingDown, "the server is shutting down")
	}
	// An HTTP member gets the goodbye with its next poll, which a client
	// that is there sends at once; one that is not is not waited for long.
	pctx, cancel := context.WithTimeout(ctx, pollGoodbye)
	defer cancel()
	for _, s := range all {
		done := ctx
		if s.poll {
			done = pctx
		}
		select {
		case <-s.finished:
		case <-done.Done():
		}
	}
	h.dropAllPolls()
	for _, s := range all {
		select {
		case <-s.finished:
		case <-ctx.Done():
		}
	}
	h.cancel()
	h.wg.Wait()
}

// Sessions is the number of open sessions.
func (h *Hub) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// refusal is why a new session was not opened: a wire code and message.
type refusal struct{ code, msg string }

func (e *refusal) Error() string { return e.msg }

var (
	errShuttingDown = &refusal{protocol.CodeShuttingDown, "the server is shutting down"}
	errServerFull   = &refusal{protocol.CodeServerFull, "the server has too many connections; try again later"}
	errPerIP        = &refusal{protocol.CodeTooManyConnections, "too many connections from your address; close some and try again"}
)

// clientOf is the key per-client limits count r against.
func (h *Hub) clientOf(r *http.Request) netip.Addr {
	return clientip.Key(h.opts.ClientIP.Request(r))
}

// register admits s: the server's session limit, then the client's. The
// refusal, if any, is a *refusal.
func (h *Hub) register(s *session) error {
	release, ok := h.perIP.Acquire(s.client)
	h.mu.Lock()
	defer h.mu.Unlock()
	var err error
	switch {
	case h.closing:
		err = errShuttingDown
	case !ok:
		err = errPerIP
	case len(h.sessions) >= h.opts.MaxSessions:
		err = errServerFull
	}
	if err != nil {
		release()
		h.errors.Inc(err.(*refusal).code)
		return err
	}
	s.release = release
	h.sessions[s] = struct{}{}
	h.connections.Inc()
	s.armJoinDeadline()
	return nil
}

// unregister takes s out of its room and the hub; safe to call twice.
func (h *Hub) unregister(s *session) {
	s.stopTimers()
	s.closeMedia()
	h.opts.Rooms.Leave(s.member)
	h.mu.Lock()
	delete(h.sessions, s)
	h.revokeLocked(s)
	if s.grace != nil {
		s.grace.Stop()
	}
	s.detached = false
	h.mu.Unlock()
	if s.release != nil {
		s.release()
	}
}

// mustJSON encodes our own message types, which cannot fail to encode
// (RawMessage fields hold JSON that was already decoded once); should
// that ever break, the client gets an error object, not a crash.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"type":"error","code":"internal","message":"the server could not encode a message"}`)
	}
	return b
}
