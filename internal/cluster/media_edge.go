package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley/parley/internal/sfu"
)

// The edge's side of a stream relay (media.go): the origin's tracks
// published in this node's SFU, fed from NATS.

// Bounds on what one relayed track may have queued between NATS and the
// SFU (beyond them NATS drops, and the edge's viewers see a loss).
const (
	relayPendingMsgs  = 1024
	relayPendingBytes = 2 << 20
)

// edge is one stream relayed to this node.
type edge struct {
	m      *Media
	stream string
	origin string
	prefix string // parley.media.<origin>.<stream>
	keys   []string
	tracks []*edgeTrack // set before run starts, read-only after
	src    *edgeSource

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when torn down

	mu        sync.Mutex
	idleSince time.Time // since the room had no viewer; zero while it has
	timer     *time.Timer
}

type edgeTrack struct {
	e     *edge
	tkey  string
	pub   *sfu.Publication
	sub   *nats.Subscription
	ended atomic.Bool
}

// edgeSource is the relay as the edge's SFU sees it: keyframe requests go
// to the origin. Layer SSRC i+1 is track i.
type edgeSource struct {
	e  *edge
	id string
}

func (s *edgeSource) SourceID() string { return s.id }

func (s *edgeSource) RequestKeyframe(ssrc uint32) {
	if ssrc == 0 || int(ssrc) > len(s.e.keys) {
		return
	}
	if err := s.e.m.c.nc.Publish(s.e.prefix+".pli", []byte(s.e.keys[ssrc-1])); err != nil {
		s.e.m.log.Debug("asking the origin for a keyframe", "stream", s.e.stream, "err", err)
	}
}

// startCall is an edge being started; waiters read ok once done closes.
type startCall struct {
	done chan struct{}
	ok   bool
}

// Demand makes a stream live on this node for a viewer: unless it is
// here already, its relay from the origin starts (once, however many
// viewers ask at the same time). It reports whether the stream is here.
func (m *Media) Demand(ctx context.Context, stream string) bool {
	m.mu.Lock()
	if e := m.edges[stream]; e != nil && e.ctx.Err() == nil { // not one stopping: a new one starts
		m.mu.Unlock()
		return true
	}
	if c, ok := m.starting[stream]; ok {
		m.mu.Unlock()
		select {
		case <-c.done:
			return c.ok
		case <-ctx.Done():
			return false
		}
	}
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return false
	}
	c := &startCall{done: make(chan struct{})}
	m.starting[stream] = c
	m.mu.Unlock()

	e, err := m.startEdge(ctx, stream)
	m.mu.Lock()
	delete(m.starting, stream)
	if e != nil && e.ctx.Err() == nil {
		m.edges[stream] = e
		c.ok = true
	}
	m.mu.Unlock()
	close(c.done)
	if err != nil {
		m.log.Debug("no relay for a stream", "stream", stream, "err", err)
	}
	if c.ok {
		m.poke(stream) // the viewer may not come: the linger starts now
	}
	return c.ok
}

var errNotElsewhere = errors.New("not live on another node")

// startEdge finds the stream's origin, publishes its tracks here and
// takes the first lease.
func (m *Media) startEdge(ctx context.Context, stream string) (*edge, error) {
	kv, err := m.streamsKV(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.c.opTimeout())
	defer cancel()
	key := roomKey(stream)
	ent, err := kv.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotElsewhere, err)
	}
	var se streamEntry
	if err := json.Unmarshal(ent.Value(), &se); err != nil || !nodeIDRE.MatchString(se.Node) {
		return nil, fmt.Errorf("%w: bad entry", errRelayMsg)
	}
	if se.Node == m.self {
		return nil, errNotElsewhere
	}
	prefix := mediaSubjects + se.Node + "." + key
	msg, err := m.c.nc.RequestWithContext(ctx, prefix+".tracks", []byte(m.self))
	if err != nil {
		return nil, fmt.Errorf("tracks of %s from %s: %w", stream, se.Node, err)
	}
	tracks, err := decodeTracks(msg.Data)
	if err != nil {
		m.stats.Rejected.Add(1)
		return nil, err
	}
	e := &edge{m: m, stream: stream, origin: se.Node, prefix: prefix, done: make(chan struct{})}
	e.ctx, e.cancel = context.WithCancel(m.ctx)
	e.src = &edgeSource{e: e, id: "relay-" + se.Node}
	for _, t := range tracks {
		e.keys = append(e.keys, base64.RawURLEncoding.EncodeToString([]byte(t.ID)))
	}
	for i, t := range tracks {
		et := &edgeTrack{e: e, tkey: e.keys[i]}
		et.pub, err = m.sfu.Publish(sfu.Streams, stream, e.src, sfu.TrackSpec{TrackID: t.TrackID, StreamID: t.StreamID,
			Codec: t.codec(), Layers: []sfu.LayerSpec{{SSRC: uint32(i + 1)}}, SharedClock: t.Shared})
		if err == nil {
			et.sub, err = m.c.nc.Subscribe(prefix+".t."+et.tkey, et.receive)
			if err != nil {
				et.pub.End()
			}
		}
		if err != nil {
			e.teardown()
			return nil, fmt.Errorf("relaying %s: %w", stream, err)
		}
		if err := et.sub.SetPendingLimits(relayPendingMsgs, relayPendingBytes); err != nil {
			m.log.Warn("bounding a relay's queue", "err", err)
		}
		e.tracks = append(e.tracks, et)
		m.stats.Relays.Add(1)
		m.stats.RelaysStarted.Add(1)
	}
	if err := m.c.nc.FlushWithContext(ctx); err == nil { // subscribed before the origin sends
		err = e.renew(ctx)
	}
	if err != nil {
		e.teardown()
		return nil, fmt.Errorf("lease on %s from %s: %w", stream, se.Node, err)
	}
	m.log.Info("relaying a stream from its origin", "stream", stream, "origin", se.Node, "tracks", len(e.tracks))
	m.wg.Add(1)
	go e.run()
	return e, nil
}

var errOriginGone = errors.New("the origin no longer has the stream")

// renew asks the origin to keep sending.
func (e *edge) renew(ctx context.Context) error {
	msg, err := e.m.c.nc.RequestWithContext(ctx, e.prefix+".lease", []byte(e.m.self))
	if err != nil {
		return err
	}
	if string(msg.Data) != relayOK {
		return errOriginGone
	}
	return nil
}

// run renews the lease every TTL/3 until the relay stops: the viewers
// left, every track ended, or the origin stopped answering.
func (e *edge) run() {
	defer e.m.wg.Done()
	defer e.teardown()
	tick := time.NewTicker(e.m.ttl / 3)
	defer tick.Stop()
	fails := 0
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(e.ctx, e.m.c.opTimeout())
			err := e.renew(ctx)
			cancel()
			switch {
			case errors.Is(err, errOriginGone):
				e.m.log.Info("the stream's origin no longer has it", "stream", e.stream, "origin", e.origin)
				return
			case err != nil && e.ctx.Err() == nil:
				if fails++; fails >= 3 {
					e.m.log.Warn("the stream's origin does not answer; ending the relay", "stream", e.stream, "origin", e.origin, "err", err)
					return
				}
			default:
				fails = 0
			}
		}
	}
}

// teardown ends the relay: the origin is told, the tracks end here.
func (e *edge) teardown() {
	e.cancel()
	e.mu.Lock()
	if e.timer != nil {
		e.timer.Stop()
	}
	e.mu.Unlock()
	if err := e.m.c.nc.Publish(e.prefix+".bye", []byte(e.m.self)); err != nil {
		e.m.log.Debug("telling the origin", "err", err)
	}
	for _, t := range e.tracks {
		_ = t.sub.Unsubscribe()
		if t.ended.CompareAndSwap(false, true) {
			t.pub.End()
		}
		e.m.stats.Relays.Add(-1)
	}
	e.m.mu.Lock()
	if e.m.edges[e.stream] == e {
		delete(e.m.edges, e.stream)
	}
	e.m.mu.Unlock()
	close(e.done)
	e.m.log.Info("stream relay stopped", "stream", e.stream, "origin", e.origin)
}

// idle is told the edge room's viewer count at each change: after Linger
// without a viewer the relay stops.
func (e *edge) idle(viewers int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case viewers > 0:
		e.idleSince = time.Time{}
	case e.idleSince.IsZero():
		e.idleSince = time.Now()
		if e.timer != nil {
			e.timer.Stop()
		}
		e.timer = time.AfterFunc(e.m.lin, func() { e.m.poke(e.stream) })
	case time.Since(e.idleSince) >= e.m.lin:
		e.cancel()
	}
}

// receive takes one message of the track's subject (NATS's goroutine for
// the subscription: one at a time, in the origin's order).
func (t *edgeTrack) receive(msg *nats.Msg) {
	m := t.e.m
	end, pkt, err := decodeTrackMsg(msg.Data)
	if err != nil {
		m.stats.Rejected.Add(1)
		return
	}
	if end {
		if t.ended.CompareAndSwap(false, true) {
			t.pub.End()
			for _, x := range t.e.tracks {
				if !x.ended.Load() {
					return
				}
			}
			t.e.cancel() // every track ended on the origin
		}
		return
	}
	if err := t.pub.WriteRTP("", pkt); err != nil {
		m.stats.Rejected.Add(1)
		return
	}
	m.stats.PacketsIn.Add(1)
}
