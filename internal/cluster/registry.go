package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Node is one node's entry in the registry.
type Node struct {
	ID    string `json:"id"`
	HTTP  string `json:"http,omitempty"`  // base URL of the app, /ws and the APIs
	Media string `json:"media,omitempty"` // the SFU's ICE UDP address
	TURN  string `json:"turn,omitempty"`  // the embedded TURN server's UDP address
	// Started is when the node joined; Seen its last heartbeat.
	Started time.Time `json:"started"`
	Seen    time.Time `json:"seen"`
	Load    Load      `json:"load"`
}

// Load is how busy a node was over its last heartbeat interval.
type Load struct {
	CPU        float64 `json:"cpu"`         // share of the machine's CPUs this process used, 0..1
	Sessions   int     `json:"sessions"`    // signaling sessions open
	EgressBits uint64  `json:"egress_bits"` // media sent, bit/s
}

// Status is the node's view of the cluster, for /api/status.
type Status struct {
	Node      string `json:"node"`
	Connected bool   `json:"connected"` // to NATS, now
	Nodes     []Node `json:"nodes"`     // by ID, this node included
	Owned     int    `json:"rooms_owned"`
}

// Nodes is the registry as last seen, by ID.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Changed is closed at the next change of the registry (or of the
// connection); take it again after each change.
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Status reports the node's view.
func (c *Cluster) Status() Status {
	nodes := c.Nodes()
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{Node: c.opts.Node.ID, Connected: c.connected, Nodes: nodes, Owned: len(c.owned)}
}

// changedLocked wakes whoever waits on Changed; c.mu is held.
func (c *Cluster) changedLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Cluster) setConnected(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connected != v {
		c.connected = v
		c.changedLocked()
	}
}

// run registers the node and follows the registry, starting over after
// a failure or a reconnection (NATS may have lost its state: an in-memory
// bucket is gone after a restart).
func (c *Cluster) run() {
	defer c.wg.Done()
	c.load.start(c.opts.Load)
	for {
		err := c.session()
		if c.ctx.Err() != nil {
			return
		}
		c.setConnected(false)
		c.log.Warn("cluster registration interrupted; starting over", "err", err)
		wait := time.NewTimer(c.opts.TTL / 3)
		select {
		case <-c.ctx.Done():
			wait.Stop()
			return
		case <-c.reconnected:
		case <-wait.C:
		}
		wait.Stop()
	}
}

var errReconnected = errors.New("NATS connection came back")

// session registers, then heartbeats and applies the registry's changes
// until the watch or a heartbeat fails, or the connection comes back.
func (c *Cluster) session() error {
	nodes, rooms, err := c.buckets(c.ctx)
	if err != nil {
		return err
	}
	if err := c.heartbeat(nodes, rooms, true); err != nil {
		return err
	}
	c.sessions.Add(1) // the buckets are there again: their watchers start over (media_watch.go)
	if c.relay != nil {
		c.relay.announce()
		if err := c.relay.askSync(); err != nil {
			return err
		}
	}
	w, err := nodes.WatchAll(c.ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", nodesBucket, err)
	}
	defer w.Stop()
	tick := time.NewTicker(c.opts.TTL / 3)
	defer tick.Stop()
	seen := map[string]Node{} // the initial values, until the watch says it has sent them all
	for {
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case <-c.reconnected:
			return errReconnected
		case <-tick.C:
			if err := c.heartbeat(nodes, rooms, false); err != nil {
				return err
			}
			c.missingGone()
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return errors.New("the registry's watch ended")
			case e == nil: // the initial values are in
				c.mu.Lock()
				var gone []string
				for id := range c.nodes {
					if _, ok := seen[id]; !ok {
						gone = append(gone, id)
					}
				}
				c.nodes, seen = seen, nil
				c.connected = true
				c.changedLocked()
				c.mu.Unlock()
				for _, id := range gone { // not back yet: NATS may have lost the registry
					c.missing[id] = time.Now().Add(c.opts.TTL)
				}
			case seen != nil:
				apply(seen, e, c)
			default:
				c.mu.Lock()
				gone := apply(c.nodes, e, c)
				c.changedLocked()
				c.mu.Unlock()
				c.nodeGone(gone)
			}
		}
	}
}

// apply records one registry entry (a put, or a removal: a goodbye or a
// node whose heartbeat stopped for the TTL) in m; it returns the node
// removed, if any.
func apply(m map[string]Node, e jetstream.KeyValueEntry, c *Cluster) (gone string) {
	if e.Operation() != jetstream.KeyValuePut {
		delete(m, e.Key())
		return e.Key()
	}
	var n Node
	if err := json.Unmarshal(e.Value(), &n); err != nil || n.ID != e.Key() {
		c.log.Warn("ignoring a bad registry entry", "key", e.Key(), "err", err)
		return ""
	}
	m[n.ID] = n
	return ""
}

// missingGone gives up on the nodes that were missing from the registry
// at the start of a session and have not come back within a TTL.
func (c *Cluster) missingGone() {
	now := time.Now()
	for id, deadline := range c.missing {
		c.mu.Lock()
		_, back := c.nodes[id]
		c.mu.Unlock()
		switch {
		case back:
			delete(c.missing, id)
		case now.After(deadline):
			delete(c.missing, id)
			c.nodeGone(id)
		}
	}
}

// nodeGone takes a node that left the registry out of the rooms it had
// members in.
func (c *Cluster) nodeGone(id string) {
	if id != "" && id != c.opts.Node.ID && c.relay != nil {
		c.relay.nodeGone(id)
	}
}

// buckets opens (creating when missing) the registry and room buckets.
// Entries expire TTL after their last write; an expiry leaves a marker so
// that watchers are told.
func (c *Cluster) buckets(ctx context.Context) (nodes, rooms jetstream.KeyValue, err error) {
	if nodes, err = c.bucket(ctx, nodesBucket, "Parley nodes (registry)"); err != nil {
		return nil, nil, err
	}
	if rooms, err = c.bucket(ctx, roomsBucket, "Parley rooms' owners"); err != nil {
		return nil, nil, err
	}
	return nodes, rooms, nil
}

// bucket opens (creating when missing) one of the cluster's buckets: in
// memory, one value per key, entries expiring TTL after their last write.
func (c *Cluster) bucket(ctx context.Context, name, what string) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opTimeout())
	defer cancel()
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, Description: what, History: 1, TTL: c.opts.TTL,
		LimitMarkerTTL: markerTTL(c.opts.TTL),
		Storage:        jetstream.MemoryStorage, Replicas: c.opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	return kv, nil
}

// markerTTL keeps an expiry's marker long enough for watchers (at least
// the server's minimum of one second).
func markerTTL(ttl time.Duration) time.Duration {
	return max(ttl, time.Second)
}

// opTimeout bounds one request to NATS.
func (c *Cluster) opTimeout() time.Duration {
	return max(c.opts.TTL/3, time.Second)
}

// heartbeat writes the node's entry with its current load, and refreshes
// the rooms it owns (fresh: at the start of a session, see refreshRooms).
func (c *Cluster) heartbeat(nodes, rooms jetstream.KeyValue, fresh bool) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.opTimeout())
	defer cancel()
	n := c.opts.Node
	n.Seen = time.Now().UTC()
	n.Load = c.load.sample()
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node: %w", err)
	}
	if _, err := nodes.Put(ctx, n.ID, b); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return c.refreshRooms(ctx, rooms, fresh)
}

// leave deletes the node's entry and gives up its rooms (Close).
func (c *Cluster) leave(ctx context.Context) {
	nodes, rooms, err := c.buckets(ctx)
	if err != nil {
		c.log.Warn("leaving the cluster", "err", err)
		return
	}
	c.releaseAll(ctx, rooms)
	if err := nodes.Delete(ctx, c.opts.Node.ID); err != nil {
		c.log.Warn("leaving the cluster", "err", err)
	}
}

// Await returns once cond holds, checking it now and at each change of
// any of the nodes' registries (or connections), or ctx's error.
func Await(ctx context.Context, nodes []*Cluster, cond func() bool) error {
	for {
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}}
		for _, n := range nodes {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(n.Changed())})
		}
		if cond() {
			return nil
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			return ctx.Err()
		}
	}
}
