package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// Signaling across nodes, for peer-to-peer rooms: a room's members may be
// connected to different nodes. Each node publishes its own members'
// joins, leaves and signals on the room's subject (the room manager's
// Observer tells it, under the room's lock, in the order the room's local
// members are told); every node subscribes to all rooms' subjects and
// mirrors the other nodes' members as remote room.Members, so a local
// member's joined lists them and its signals reach them. One node's
// messages on one subject arrive in order, so a member's signals never
// overtake its join anywhere. Group (sfu) rooms stay per node: their
// media does not cross nodes yet.

const (
	roomSubjects = "parley.room."
	syncSubject  = "parley.sync" // a node asks the others to tell their members again
)

// relayEvent is one room event on the wire.
type relayEvent struct {
	Kind string         `json:"k"` // join, leave, signal
	Node string         `json:"n"` // the sender's node
	Room string         `json:"r"`
	Mode string         `json:"m,omitempty"`
	Cap  int            `json:"c,omitempty"`
	Peer *protocol.Peer `json:"p,omitempty"` // join: what peers are told
	From string         `json:"f"`
	To   string         `json:"t,omitempty"`
	Data []byte         `json:"d,omitempty"`
}

// RoomRelay is what the relay needs from the signaling plane.
type RoomRelay struct {
	Rooms *room.Manager
	// PeerOf is what a local member's room-mates are told about it;
	// RemoteInfo the Info that tells the same of a remote member.
	PeerOf     func(*room.Member) protocol.Peer
	RemoteInfo func(protocol.Peer) any
	// Moved is told of a local member whose client resumed at another
	// node: it has left its room here quietly (the room keeps it as that
	// node's); its session must end without a word to anyone.
	Moved func(*room.Member)
}

type relay struct {
	c  *Cluster
	rr RoomRelay

	mu     sync.Mutex
	remote map[string]remoteMember // other nodes' members, by ID
	local  map[*room.Member][]byte // local members' join events, for a node that asks
	subs   [2]*nats.Subscription   // rooms' subjects, sync requests
}

type remoteMember struct {
	m    *room.Member
	node string
}

func newRelay(c *Cluster, rr RoomRelay) *relay {
	return &relay{c: c, rr: rr, remote: map[string]remoteMember{}, local: map[*room.Member][]byte{}}
}

// start subscribes and begins telling other nodes about local members.
func (r *relay) start() error {
	var err error
	if r.subs[0], err = r.c.nc.Subscribe(roomSubjects+">", r.receive); err != nil {
		return fmt.Errorf("cluster: subscribe to rooms: %w", err)
	}
	if r.subs[1], err = r.c.nc.Subscribe(syncSubject, r.resync); err != nil {
		return fmt.Errorf("cluster: subscribe to %s: %w", syncSubject, err)
	}
	if err := r.c.nc.Flush(); err != nil { // subscribed before any member joins
		return fmt.Errorf("cluster: subscribe to rooms: %w", err)
	}
	r.rr.Rooms.Observe(r.observe)
	return r.askSync()
}

// stop stops telling and listening; remote members leave their rooms.
func (r *relay) stop() {
	r.rr.Rooms.Observe(nil)
	for _, s := range r.subs {
		if s != nil {
			_ = s.Unsubscribe()
		}
	}
	r.nodeGone("")
}

// askSync asks every node to tell its members again (at start and after
// a reconnection: core NATS may have lost messages meanwhile).
func (r *relay) askSync() error {
	if err := r.c.nc.Publish(syncSubject, []byte(r.c.opts.Node.ID)); err != nil {
		return fmt.Errorf("cluster: ask for members: %w", err)
	}
	return nil
}

func subject(roomName string) string { return roomSubjects + roomKey(roomName) }

// observe is the room manager's Observer: a local member's event goes to
// the other nodes (a group room's media crosses nodes in media.go).
func (r *relay) observe(rm *room.Room, kind room.EventKind, from *room.Member, to string, dst *room.Member, data []byte) {
	if from.Remote || (dst != nil && !dst.Remote) {
		return
	}
	ev := relayEvent{Node: r.c.opts.Node.ID, Room: rm.Name, From: from.ID}
	switch kind {
	case room.PeerJoined:
		p := r.rr.PeerOf(from)
		ev.Kind, ev.Mode, ev.Cap, ev.Peer = "join", string(rm.Mode), rm.Capacity, &p
	case room.PeerLeft:
		ev.Kind = "leave"
	case room.Signal:
		// To everyone: published even when no other node's member is
		// here yet, since one may be in the room as another node sees it.
		ev.Kind, ev.To, ev.Data = "signal", to, data
	}
	b, err := json.Marshal(ev)
	if err != nil {
		r.c.log.Warn("encoding a room event", "err", err)
		return
	}
	switch kind {
	case room.PeerJoined:
		r.mu.Lock()
		r.local[from] = b
		r.mu.Unlock()
	case room.PeerLeft:
		r.mu.Lock()
		delete(r.local, from)
		r.mu.Unlock()
	}
	if err := r.c.nc.Publish(subject(rm.Name), b); err != nil {
		r.c.log.Warn("relaying a room event", "room", rm.Name, "err", err)
	}
}

// resync answers another node's request: every local member's join again.
func (r *relay) resync(m *nats.Msg) {
	if string(m.Data) != r.c.opts.Node.ID {
		r.announce()
	}
}

// announce publishes every local member's join again (receivers skip
// members they know): at the start of a session with NATS, so nodes that
// lost them learn them again, and for a node that asks.
func (r *relay) announce() {
	r.mu.Lock()
	type pending struct {
		room string
		b    []byte
	}
	var out []pending
	for mem, b := range r.local {
		if rm := mem.Room(); rm != nil {
			out = append(out, pending{rm.Name, b})
		}
	}
	r.mu.Unlock()
	for _, p := range out {
		if err := r.c.nc.Publish(subject(p.room), p.b); err != nil {
			r.c.log.Warn("telling a member again", "err", err)
		}
	}
}

// maxRelayData bounds a relayed signal's data: the hubs' --max-message
// is far below it, so only a node that is not Parley's sends more.
const maxRelayData = 1 << 20

// decodeEvent parses another node's room event and checks its shape as
// the signaling plane checks a client's (pkg/protocol's limits): NATS is
// shared, and what comes from it reaches local members' sockets.
func decodeEvent(b []byte) (relayEvent, error) {
	var ev relayEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return ev, err
	}
	switch {
	case ev.Node == "" || len(ev.Node) > protocol.MaxIDLen:
		return ev, errors.New("bad node")
	case !protocol.ValidRoom(ev.Room):
		return ev, errors.New("bad room name")
	case ev.From == "" || len(ev.From) > protocol.MaxIDLen:
		return ev, errors.New("bad member ID")
	}
	switch ev.Kind {
	case "join":
		p := ev.Peer
		if p == nil || p.ID != ev.From || len(p.Name) > protocol.MaxNameLen || len(p.Identity) > protocol.MaxTokenLen {
			return ev, errors.New("bad joining peer")
		}
		if (ev.Mode != string(room.P2P) && ev.Mode != string(room.SFU)) || ev.Cap < 0 {
			return ev, errors.New("bad room mode or capacity")
		}
	case "leave":
	case "signal":
		if len(ev.To) > protocol.MaxIDLen || len(ev.Data) == 0 || len(ev.Data) > maxRelayData || !json.Valid(ev.Data) {
			return ev, errors.New("bad signal")
		}
	default:
		return ev, fmt.Errorf("unknown kind %q", ev.Kind)
	}
	return ev, nil
}

// receive applies another node's room event, in the order that node sent
// its events.
func (r *relay) receive(m *nats.Msg) {
	ev, err := decodeEvent(m.Data)
	if err != nil {
		r.c.log.Warn("ignoring a bad room event", "err", err)
		return
	}
	if ev.Node == r.c.opts.Node.ID {
		return
	}
	switch ev.Kind {
	case "join":
		if ev.Peer == nil || ev.Peer.ID != ev.From {
			return
		}
		if here := r.rr.Rooms.Lookup(ev.Room); here != nil && string(here.Mode) != ev.Mode {
			r.c.log.Warn("a room has another mode on another node; its member there is not shown here", "room", ev.Room, "mode", here.Mode, "theirs", ev.Mode)
			return
		}
		if r.knownMoved(ev) || r.movedAway(ev) {
			return
		}
		mem := r.remoteMember(ev)
		r.mu.Lock()
		r.remote[ev.From] = remoteMember{m: mem, node: ev.Node}
		r.mu.Unlock()
		if _, _, err := r.rr.Rooms.Join(ev.Room, room.Mode(ev.Mode), ev.Cap, mem); err != nil {
			r.c.log.Warn("a member of another node cannot join here", "room", ev.Room, "member", ev.From, "err", err)
			r.mu.Lock()
			delete(r.remote, ev.From)
			r.mu.Unlock()
		}
	case "leave":
		r.mu.Lock()
		rm, ok := r.remote[ev.From]
		ok = ok && rm.node == ev.Node // not a member that moved on since
		if ok {
			delete(r.remote, ev.From)
		}
		r.mu.Unlock()
		if ok {
			r.rr.Rooms.Leave(rm.m)
		}
	case "signal":
		r.mu.Lock()
		rm, ok := r.remote[ev.From]
		r.mu.Unlock()
		if ok { // encoded once for all local receivers; one on another node: nothing to do here
			wire := protocol.AppendSignal(make([]byte, 0, protocol.SignalLen(ev.From, ev.Data)), ev.From, ev.Data)
			_, _ = r.rr.Rooms.RouteWire(rm.m, ev.To, ev.Data, wire)
		}
	}
}

// knownMoved handles a join of a member this node mirrors already: told
// again (sync), or moved between two other nodes. It reports whether the
// member was known.
func (r *relay) knownMoved(ev relayEvent) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	known, ok := r.remote[ev.From]
	if ok {
		known.node = ev.Node
		r.remote[ev.From] = known
	}
	return ok
}

// movedAway handles another node's join of a member that is ours: its
// client resumed there (internal/signal/move.go). The member stays in its room here as
// that node's, nobody here is told anything, and its session here ends
// quietly. It reports whether ev was such a join.
func (r *relay) movedAway(ev relayEvent) bool {
	rm := r.rr.Rooms.Lookup(ev.Room)
	if rm == nil {
		return false
	}
	local := rm.Member(ev.From)
	if local == nil || local.Remote {
		return false
	}
	mem := r.remoteMember(ev)
	r.mu.Lock()
	r.remote[ev.From] = remoteMember{m: mem, node: ev.Node}
	delete(r.local, local)
	r.mu.Unlock()
	if _, err := r.rr.Rooms.Replace(local, mem); err != nil {
		r.mu.Lock()
		delete(r.remote, ev.From)
		r.mu.Unlock()
		return false // it left meanwhile: an ordinary join
	}
	r.c.log.Info("a member moved to another node", "room", ev.Room, "member", ev.From, "node", ev.Node)
	if r.rr.Moved != nil {
		r.rr.Moved(local)
	}
	return true
}

// remoteMember is the room.Member that stands for another node's member.
func (r *relay) remoteMember(ev relayEvent) *room.Member {
	return &room.Member{ID: ev.From, Name: ev.Peer.Name, Remote: true, Info: r.rr.RemoteInfo(*ev.Peer),
		Notify: func(room.Event) bool { return true }} // reached through the observer
}

// adopt moves another node's member here: m takes its place in its room
// under its ID when valid accepts that member and the node it is at (the
// resume token's check, which also makes m like it). The other nodes learn
// it from m's join, which the observer publishes; the member's old node
// ends its session there.
func (r *relay) adopt(id string, m *room.Member, valid func(old *room.Member, node string) bool) (*room.Room, error) {
	r.mu.Lock()
	rm, ok := r.remote[id]
	if !ok || !valid(rm.m, rm.node) {
		r.mu.Unlock()
		return nil, ErrNotMovable
	}
	delete(r.remote, id)
	r.mu.Unlock()
	joined, err := r.rr.Rooms.Replace(rm.m, m)
	if err != nil {
		return nil, fmt.Errorf("cluster: move member %s here: %w", id, err)
	}
	return joined, nil
}

// ErrNotMovable: no member of another node matches the resume token.
var ErrNotMovable = errors.New("cluster: no member of another node to move here")

// nodeGone takes a node's members out of their rooms ("" every node's:
// stop).
func (r *relay) nodeGone(node string) {
	r.mu.Lock()
	var gone []*room.Member
	for id, rm := range r.remote {
		if node == "" || rm.node == node {
			gone = append(gone, rm.m)
			delete(r.remote, id)
		}
	}
	r.mu.Unlock()
	for _, m := range gone {
		r.rr.Rooms.Leave(m)
	}
}

// Adopt moves a member of another node to this one, as its client resumed
// here (see relay.adopt); ErrNotMovable when the node relays no rooms.
func (c *Cluster) Adopt(id string, m *room.Member, valid func(old *room.Member, node string) bool) (*room.Room, error) {
	if c.relay == nil {
		return nil, ErrNotMovable
	}
	return c.relay.adopt(id, m, valid)
}
