// Package room keeps rooms and their members: capacity, join and leave
// notifications, and routing a message to one named member. It does no I/O:
// members receive events through a non-blocking Notify function that the
// transport supplies.
package room

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
)

// Mode says who carries a room's media.
type Mode string

// Room modes.
const (
	P2P Mode = "p2p" // the server relays signaling only; media flows peer to peer
	SFU Mode = "sfu" // the server routes media
)

// EventKind is what happened.
type EventKind uint8

// Events delivered to members.
const (
	PeerJoined EventKind = iota + 1
	PeerLeft
	Signal
)

// Event is delivered to a member. For Signal, Data is the sender's payload,
// verbatim; the receiver must not keep it past Notify unless it copies.
// Wire, when the sender's transport set it, is the message already encoded
// for the receivers: one slice shared by every receiver of the event, which
// they may keep (queue) but never modify.
type Event struct {
	Kind EventKind
	From *Member
	Data []byte
	Wire []byte
}

// Member is one participant. Notify must not block: it queues the event and
// returns false when the member cannot take more (then the transport is
// expected to disconnect it; the room never waits for it).
type Member struct {
	ID     string
	Name   string
	Notify func(Event) bool
	// Info is the transport's own description of the member (what peers
	// are told about it). It is set before Join and not changed while the
	// member is in a room, so other members' Notify may read it.
	Info any
	// Remote marks a member connected to another node of a cluster: its
	// Notify is not how it is reached (see Observer).
	Remote bool

	room atomic.Pointer[Room] // set while joined; written under Manager.mu
}

// Observer is told, under the room's lock and in the order the room's
// members are told, of every join and leave and of every routed message
// (to: a member's ID, or Everyone; dst: that member, nil for Everyone).
// A cluster uses it to carry a room's events to other nodes
// (internal/cluster); it must not block nor call the Manager.
type Observer func(r *Room, kind EventKind, from *Member, to string, dst *Member, data []byte)

// Room reports the room the member is in, or nil.
func (m *Member) Room() *Room { return m.room.Load() }

// Room is a named set of members.
type Room struct {
	Name     string
	Mode     Mode
	Capacity int

	mu      sync.RWMutex
	members map[string]*Member
	order   []*Member // join order, for stable peer lists
}

// Errors from Manager.
var (
	ErrFull          = errors.New("room is full")
	ErrTooManyRooms  = errors.New("too many rooms are open")
	ErrAlreadyJoined = errors.New("already in a room")
	ErrNotInRoom     = errors.New("not in a room")
	ErrNoSuchPeer    = errors.New("no such member in this room")
)

// Manager owns all rooms. Rooms appear on first join and vanish when empty.
type Manager struct {
	maxRooms int
	observer atomic.Pointer[Observer] // nil: a single node, nothing to tell

	mu    sync.Mutex
	rooms map[string]*Room
}

// NewManager makes a manager that keeps at most maxRooms rooms open.
func NewManager(maxRooms int) *Manager {
	return &Manager{maxRooms: maxRooms, rooms: map[string]*Room{}}
}

// Observe sets the observer (nil removes it).
func (g *Manager) Observe(o Observer) {
	if o == nil {
		g.observer.Store(nil)
		return
	}
	g.observer.Store(&o)
}

// NewID returns a random member ID (16 hex characters).
func NewID() string { return randomHex(8) }

// NewSecret returns 128 random bits in hex (32 characters): for what must
// not be guessed, such as resume tokens and HTTP session IDs.
func NewSecret() string { return randomHex(16) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Join puts m into the named room, creating it with mode and capacity if it
// does not exist (an existing room keeps its own). It returns the room and
// the members already there, in join order; they are told PeerJoined before
// Join returns, so no later event about m can overtake that one.
func (g *Manager) Join(name string, mode Mode, capacity int, m *Member) (*Room, []*Member, error) {
	return g.JoinIf(name, mode, capacity, m, nil)
}

// JoinIf is Join with a last say for the caller: admit (nil admits all)
// is called with the manager and the room locked, once the room has space,
// before m is added or anyone is told. created says whether this join
// would create the room; peers are the members already in it, in join
// order. Its error refuses the join and is returned as is; a room the join
// would have created is then not kept. Per-client limits on new rooms use
// it, so joining an existing room never counts, and so can anything that
// must decide about m (its Info) knowing who is already there.
func (g *Manager) JoinIf(name string, mode Mode, capacity int, m *Member, admit func(created bool, peers []*Member) error) (*Room, []*Member, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.room.Load() != nil {
		return nil, nil, ErrAlreadyJoined
	}
	r := g.rooms[name]
	created := r == nil
	if created {
		if len(g.rooms) >= g.maxRooms {
			return nil, nil, ErrTooManyRooms
		}
		r = &Room{Name: name, Mode: mode, Capacity: capacity, members: map[string]*Member{}}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.members) >= r.Capacity {
		return r, nil, ErrFull
	}
	if admit != nil {
		if err := admit(created, r.order); err != nil {
			return nil, nil, err
		}
	}
	if created {
		g.rooms[name] = r
	}
	peers := append([]*Member(nil), r.order...)
	r.members[m.ID] = m
	r.order = append(r.order, m)
	m.room.Store(r)
	for _, p := range peers {
		p.Notify(Event{Kind: PeerJoined, From: m})
	}
	if o := g.observer.Load(); o != nil {
		(*o)(r, PeerJoined, m, "", nil, nil)
	}
	return r, peers, nil
}

// Leave takes m out of its room and tells the others. It is a no-op for a
// member in no room, so transports may call it on every disconnect.
func (g *Manager) Leave(m *Member) (*Room, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := m.room.Swap(nil)
	if r == nil {
		return nil, false
	}
	r.mu.Lock()
	delete(r.members, m.ID)
	for i, x := range r.order {
		if x == m {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	for _, p := range r.order {
		p.Notify(Event{Kind: PeerLeft, From: m})
	}
	if o := g.observer.Load(); o != nil {
		(*o)(r, PeerLeft, m, "", nil, nil)
	}
	empty := len(r.members) == 0
	r.mu.Unlock()
	if empty {
		delete(g.rooms, r.Name)
	}
	return r, true
}

// Replace puts m in old's place in its room, under the same ID, telling
// none of the room's members (for them nothing changed) but the Observer,
// as a join of m: a member that moved from one node of a cluster to
// another (old is the other node's, m this node's, or the reverse). It
// returns ErrNotInRoom when old is in no room, and ErrAlreadyJoined when
// m is in one.
func (g *Manager) Replace(old, m *Member) (*Room, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.room.Load() != nil {
		return nil, ErrAlreadyJoined
	}
	r := old.room.Load()
	if r == nil || old.ID != m.ID {
		return nil, ErrNotInRoom
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old.room.Store(nil)
	r.members[m.ID] = m
	for i, x := range r.order {
		if x == old {
			r.order[i] = m
			break
		}
	}
	m.room.Store(r)
	if o := g.observer.Load(); o != nil {
		(*o)(r, PeerJoined, m, "", nil, nil)
	}
	return r, nil
}

// Everyone is the address of a message to all other members of the room.
const Everyone = "*"

// Route delivers data from m to the member with id to in m's room, or to
// every other member when to is Everyone. It returns ErrNoSuchPeer for
// anyone else; delivered is false when a receiver's queue was full.
func (g *Manager) Route(m *Member, to string, data []byte) (delivered bool, err error) {
	return g.RouteWire(m, to, data, nil)
}

// RouteWire is Route with the message already encoded: every receiver's
// event carries the same wire slice (see Event), so a message to Everyone
// costs one encoding and one copy in memory however many receive it.
func (g *Manager) RouteWire(m *Member, to string, data, wire []byte) (delivered bool, err error) {
	r := m.room.Load()
	if r == nil {
		return false, ErrNotInRoom
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if to == Everyone {
		delivered = true
		for _, p := range r.order {
			if p != m && !p.Notify(Event{Kind: Signal, From: m, Data: data, Wire: wire}) {
				delivered = false
			}
		}
		if o := g.observer.Load(); o != nil {
			(*o)(r, Signal, m, to, nil, data)
		}
		return delivered, nil
	}
	dst := r.members[to]
	if dst == nil || dst == m {
		return false, ErrNoSuchPeer
	}
	if o := g.observer.Load(); o != nil {
		(*o)(r, Signal, m, to, dst, data)
	}
	return dst.Notify(Event{Kind: Signal, From: m, Data: data, Wire: wire}), nil
}

// Members returns a snapshot of the room's members in join order.
func (r *Room) Members() []*Member {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]*Member(nil), r.order...)
}

// Member returns the member with the given ID, or nil.
func (r *Room) Member(id string) *Member {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.members[id]
}

// Counts returns the number of open rooms and members in them.
func (g *Manager) Counts() (rooms, members int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.rooms {
		r.mu.RLock()
		members += len(r.members)
		r.mu.RUnlock()
	}
	return len(g.rooms), members
}

// Lookup returns the named room, or nil.
func (g *Manager) Lookup(name string) *Room {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rooms[name]
}
