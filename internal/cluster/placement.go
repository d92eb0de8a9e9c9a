package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley/parley/pkg/protocol"
)

// Placement: where a new room or stream goes, and where a client that
// must leave its node goes: the least loaded node of the registry.

// Full marks of one node's load: what counts as a node being fully busy
// in each dimension, so that CPU, sessions and egress add up to one
// score. Rough, on purpose: the score only orders nodes.
const (
	fullSessions   = 10000 // signaling sessions
	fullEgressBits = 1e9   // media sent, bit/s
)

// placeSlack is how much less loaded another node must be than this one
// before placement picks it over this one: a little noise in the load
// must not send rooms and clients back and forth.
const placeSlack = 0.05

// Score is a node's load as one number, 0 idle, about 1 per fully busy
// dimension (CPU of the whole machine, 10 000 sessions, 1 Gbit/s sent).
func (l Load) Score() float64 {
	return l.CPU + float64(l.Sessions)/fullSessions + float64(l.EgressBits)/fullEgressBits
}

// ByLoad returns the nodes that clients can reach (HTTP set), least
// loaded first (ties by ID), without the node skip ("" none).
func ByLoad(nodes []Node, skip string) []Node {
	out := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		if n.ID != skip && n.HTTP != "" {
			out = append(out, n)
		}
	}
	slices.SortStableFunc(out, func(a, b Node) int {
		return cmp.Or(cmp.Compare(a.Load.Score(), b.Load.Score()), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Place picks the node for something new from nodes: the least loaded,
// unless the node self is within placeSlack of it (then self: no move
// for noise). ok is false when no node qualifies.
func Place(nodes []Node, self string) (Node, bool) {
	all := ByLoad(nodes, "")
	if len(all) == 0 {
		return Node{}, false
	}
	best := all[0]
	for _, n := range all {
		if n.ID == self && n.Load.Score() <= best.Load.Score()+placeSlack {
			return n, true
		}
	}
	return best, true
}

// Others are the other nodes clients can reach, least loaded first.
func (c *Cluster) Others() []Node { return ByLoad(c.Nodes(), c.opts.Node.ID) }

// PlaceRoom returns the node that carries a room's media: its owner in
// the rooms bucket while that node is in the registry, else the node
// Place picks, which then claims the room (of two nodes placing a room
// at once, one claim wins and both return its node). A node placed
// elsewhere asks that node to claim the room over NATS; when it does not
// answer, this node claims the room itself.
func (c *Cluster) PlaceRoom(ctx context.Context, room string) (Node, error) {
	nodes := c.Nodes()
	find := func(id string) (Node, bool) {
		i := slices.IndexFunc(nodes, func(n Node) bool { return n.ID == id })
		if i < 0 {
			return Node{}, false
		}
		return nodes[i], true
	}
	owner, err := c.RoomOwner(ctx, room)
	if err != nil {
		return Node{}, err
	}
	if n, ok := find(owner); ok {
		return n, nil
	}
	target, ok := Place(nodes, c.opts.Node.ID)
	if ok && target.ID != c.opts.Node.ID {
		msg, err := c.nc.RequestWithContext(ctx, claimSubject+target.ID, []byte(room))
		if err == nil {
			if n, ok := find(string(msg.Data)); ok {
				return n, nil
			}
			// The room's owner is gone and its claim has not expired:
			// claiming here now would race the target's next claim.
			return Node{}, fmt.Errorf("%w: room %s, node %s", ErrOwnerGone, room, msg.Data)
		}
		c.log.Debug("the node placed for a room did not answer; claiming it here", "room", room, "node", target.ID, "err", err)
	}
	if owner, err = c.ClaimRoom(ctx, room); err != nil {
		return Node{}, err
	}
	if n, ok := find(owner); ok {
		return n, nil
	}
	if owner == c.opts.Node.ID {
		return c.opts.Node, nil // before this node's own entry is read back
	}
	return Node{}, fmt.Errorf("%w: room %s, node %s", ErrOwnerGone, room, owner)
}

// ErrOwnerGone: the room's owner left the registry and its claim has
// not expired yet (it does within the TTL).
var ErrOwnerGone = errors.New("cluster: the room's owner is gone")

// claimSubject + a node's ID: another node asks it to claim a room it
// placed there (the room's name as the data); it answers with the owner.
const claimSubject = "parley.claim."

// answerClaims subscribes to the requests to claim rooms placed here.
func (c *Cluster) answerClaims() (*nats.Subscription, error) {
	sub, err := c.nc.Subscribe(claimSubject+c.opts.Node.ID, func(m *nats.Msg) {
		room := string(m.Data)
		if !protocol.ValidRoom(room) { // from NATS: checked as a client's room name is
			c.log.Debug("a claim for a room that is no room name", "bytes", len(m.Data))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opTimeout())
		defer cancel()
		owner, err := c.ClaimRoom(ctx, room)
		if err != nil {
			c.log.Warn("claiming a room placed here", "room", room, "err", err)
			return // the asking node claims it
		}
		if err := m.Respond([]byte(owner)); err != nil {
			c.log.Debug("answering a claim", "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: subscribe to %s: %w", claimSubject, err)
	}
	return sub, nil
}

// StreamOrigin returns the node a stream is published on as the media
// relay announced it, ok false when no node announced it (or the relay
// does not run).
func (c *Cluster) StreamOrigin(ctx context.Context, stream string) (Node, bool, error) {
	kv, err := c.js.KeyValue(ctx, streamsBucket) // the media relay's (media.go)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return Node{}, false, nil
	}
	if err != nil {
		return Node{}, false, fmt.Errorf("stream origin: %w", err)
	}
	e, err := kv.Get(ctx, roomKey(stream))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Node{}, false, nil
	}
	if err != nil {
		return Node{}, false, fmt.Errorf("stream origin %s: %w", stream, err)
	}
	var v streamEntry
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return Node{}, false, fmt.Errorf("stream origin %s: %w", stream, err)
	}
	for _, n := range c.Nodes() {
		if n.ID == v.Node {
			return n, true, nil
		}
	}
	return Node{}, false, nil // its node left; the entry expires
}

// Traffic is what the node's NATS connection carried so far: messages
// and payload bytes received and sent (every plane: registry, rooms'
// signaling, media relays).
func (c *Cluster) Traffic() (inMsgs, outMsgs, inBytes, outBytes uint64) {
	st := c.nc.Stats()
	return st.InMsgs, st.OutMsgs, st.InBytes, st.OutBytes
}
