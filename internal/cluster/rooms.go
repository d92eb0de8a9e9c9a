package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Room ownership: a room's state has one owner at a time, the node whose
// create of the room's key in the rooms bucket succeeded (a write that
// expects no previous revision, so of two nodes racing exactly one
// wins). The owner rewrites the key at each heartbeat, expecting its own
// last revision; a node that dies stops doing so and the room is free
// again after the TTL. Releasing deletes the key at the owner's revision:
// the owner does so when the room has had no member (on any node, as its
// room relay sees them) at two heartbeats in a row, so a room placed here
// whose members have not reached it yet is kept.

// Owner is a room's entry in the rooms bucket.
type Owner struct {
	Room  string    `json:"room"`
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
}

// ErrNotRegistered is returned by the room operations before the node
// has reached NATS (or while it is away).
var ErrNotRegistered = errors.New("cluster: not connected to NATS")

// roomKey is the room's key: room names may hold characters (a leading
// or doubled dot) that key names may not.
func roomKey(room string) string { return base64.RawURLEncoding.EncodeToString([]byte(room)) }

func (c *Cluster) roomsKV(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, roomsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, ErrNotRegistered
	}
	return kv, err
}

// ClaimRoom makes this node the room's owner unless another node owns
// it; either way it returns the owner's ID.
func (c *Cluster) ClaimRoom(ctx context.Context, room string) (string, error) {
	kv, err := c.roomsKV(ctx)
	if err != nil {
		return "", err
	}
	me := Owner{Room: room, Node: c.opts.Node.ID, Since: time.Now().UTC()}
	b, err := json.Marshal(me)
	if err != nil {
		return "", fmt.Errorf("encode owner: %w", err)
	}
	key := roomKey(room)
	for range 3 { // the owner may give the room up between our create and our read
		rev, err := kv.Create(ctx, key, b)
		if err == nil {
			c.mu.Lock()
			c.owned[room] = rev
			c.mu.Unlock()
			return me.Node, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", fmt.Errorf("claim room %s: %w", room, err)
		}
		o, _, err := c.owner(ctx, kv, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return "", err
		}
		return o.Node, nil
	}
	return "", fmt.Errorf("claim room %s: its ownership kept changing", room)
}

// RoomOwner returns the room's owner, "" when it has none.
func (c *Cluster) RoomOwner(ctx context.Context, room string) (string, error) {
	kv, err := c.roomsKV(ctx)
	if err != nil {
		return "", err
	}
	o, _, err := c.owner(ctx, kv, roomKey(room))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	return o.Node, err
}

// owner reads a room's entry and its revision.
func (c *Cluster) owner(ctx context.Context, kv jetstream.KeyValue, key string) (Owner, uint64, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return Owner{}, 0, err
	}
	var o Owner
	if err := json.Unmarshal(e.Value(), &o); err != nil {
		return Owner{}, 0, fmt.Errorf("room owner entry %s: %w", key, err)
	}
	return o, e.Revision(), nil
}

// ReleaseRoom gives up a room this node owns (its last member left; see
// refreshRooms).
func (c *Cluster) ReleaseRoom(ctx context.Context, room string) error {
	c.mu.Lock()
	rev, ok := c.owned[room]
	delete(c.owned, room)
	delete(c.empty, room)
	c.mu.Unlock()
	if !ok {
		return nil
	}
	kv, err := c.roomsKV(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, roomKey(room), jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("release room %s: %w", room, err)
	}
	return nil
}

// Owns says whether this node owns the room.
func (c *Cluster) Owns(room string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.owned[room]
	return ok
}

// refreshRooms rewrites the owned rooms' keys (heartbeat), expecting
// the revision this node last wrote. fresh (a new session: NATS may have
// restarted and lost the bucket, and revisions may have begun again)
// trusts no remembered revision: the key is read, and kept when it still
// names this node, created when missing. A room another node got first
// is lost, and OnLost is told.
func (c *Cluster) refreshRooms(ctx context.Context, kv jetstream.KeyValue, fresh bool) error {
	c.mu.Lock()
	owned := make(map[string]uint64, len(c.owned))
	for r, rev := range c.owned {
		owned[r] = rev
	}
	c.mu.Unlock()
	for room, rev := range owned {
		if c.ended(room) {
			if err := c.ReleaseRoom(ctx, room); err != nil {
				c.log.Warn("releasing a room without members", "room", room, "err", err) // its key expires after the TTL
			} else {
				c.log.Debug("room released: no members", "room", room)
			}
			continue
		}
		next, lost, err := c.refreshRoom(ctx, kv, room, rev, fresh)
		if err != nil {
			return fmt.Errorf("refresh room %s: %w", room, err)
		}
		c.mu.Lock()
		if _, still := c.owned[room]; still { // not released meanwhile
			if lost {
				delete(c.owned, room)
				delete(c.empty, room)
			} else {
				c.owned[room] = next
			}
		}
		c.mu.Unlock()
		if lost {
			c.log.Warn("room ownership lost to another node", "room", room)
			if c.opts.OnLost != nil {
				c.opts.OnLost(room)
			}
		}
	}
	return nil
}

// ended says whether an owned room has had no member at this heartbeat
// and the one before (with a room relay; without one rooms are kept until
// Close).
func (c *Cluster) ended(room string) bool {
	if c.relay == nil {
		return false
	}
	empty := c.relay.rr.Rooms.Lookup(room) == nil
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.empty[room]
	if empty {
		c.empty[room] = true
	} else {
		delete(c.empty, room)
	}
	return empty && was
}

func (c *Cluster) refreshRoom(ctx context.Context, kv jetstream.KeyValue, room string, rev uint64, fresh bool) (next uint64, lost bool, err error) {
	b, err := json.Marshal(Owner{Room: room, Node: c.opts.Node.ID, Since: time.Now().UTC()})
	if err != nil {
		return 0, false, fmt.Errorf("encode owner: %w", err)
	}
	key := roomKey(room)
	if !fresh {
		next, err := kv.Update(ctx, key, b, rev)
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return next, false, err
		}
	}
	o, cur, err := c.owner(ctx, kv, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		next, err := kv.Create(ctx, key, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, true, nil
		}
		return next, false, err
	case err != nil:
		return 0, false, err
	case o.Node != c.opts.Node.ID:
		return 0, true, nil
	}
	next, err = kv.Update(ctx, key, b, cur)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, true, nil // taken between our read and our write
	}
	return next, false, err
}

// releaseAll gives up every owned room (Close).
func (c *Cluster) releaseAll(ctx context.Context, kv jetstream.KeyValue) {
	c.mu.Lock()
	owned := c.owned
	c.owned, c.empty = map[string]uint64{}, map[string]bool{}
	c.mu.Unlock()
	for room, rev := range owned {
		if err := kv.Delete(ctx, roomKey(room), jetstream.LastRevision(rev)); err != nil {
			c.log.Warn("releasing room", "room", room, "err", err)
		}
	}
}
