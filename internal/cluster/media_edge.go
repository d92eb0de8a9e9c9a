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

	"github.com/parley/parley/internal/ingest"
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

// edge is one room relayed to this node from one origin node.
type edge struct {
	m      *Media
	id     edgeID
	prefix string // parley.media.<origin>.<room>

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when torn down

	mu        sync.Mutex
	tracks    []*edgeTrack           // track i is the SFU layer with SSRC i+1
	srcs      map[string]*edgeSource // by the publisher's ID on the origin
	idleSince time.Time              // since the room had no local participant; zero while it has
	timer     *time.Timer
	claim     ingest.Claim // the stream's name here while the relay runs (MediaOptions.Claim)
}

type edgeTrack struct {
	e     *edge
	tkey  string
	pub   *sfu.Publication
	sub   *nats.Subscription
	ended atomic.Bool
}

// edgeSource is one of the origin's publishers as the edge's SFU sees
// it (same ID, so members and viewers see the same publisher as on the
// origin): keyframe requests go to the origin. Layer SSRC i+1 is the
// edge's track i.
type edgeSource struct {
	e  *edge
	id string
}

func (s *edgeSource) SourceID() string { return s.id }

func (s *edgeSource) RequestKeyframe(ssrc uint32) {
	s.e.mu.Lock()
	if ssrc == 0 || int(ssrc) > len(s.e.tracks) {
		s.e.mu.Unlock()
		return
	}
	tkey := s.e.tracks[ssrc-1].tkey
	s.e.mu.Unlock()
	if err := s.e.m.c.nc.Publish(s.e.prefix+".pli", []byte(tkey)); err != nil {
		s.e.m.log.Debug("asking the origin for a keyframe", "stream", s.e.id.name, "err", err)
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
	sc := scope{sfu.Streams, stream}
	m.mu.Lock()
	for id, e := range m.edges {
		if id.scope == sc && e.ctx.Err() == nil { // not one stopping: a new one starts
			m.mu.Unlock()
			return true
		}
	}
	m.mu.Unlock()
	node, err := m.streamOrigin(ctx, stream)
	if err != nil {
		m.log.Debug("no relay for a stream", "stream", stream, "err", err)
		return false
	}
	return m.ensureEdge(ctx, edgeID{sc, node})
}

var errNotElsewhere = errors.New("not live on another node")

// streamOrigin reads the stream's origin node from the streams bucket.
func (m *Media) streamOrigin(ctx context.Context, stream string) (string, error) {
	kv, err := m.streamsKV(ctx)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, m.c.opTimeout())
	defer cancel()
	ent, err := kv.Get(ctx, roomKey(stream))
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNotElsewhere, err)
	}
	var se streamEntry
	if err := json.Unmarshal(ent.Value(), &se); err != nil || !nodeIDRE.MatchString(se.Node) {
		return "", fmt.Errorf("%w: bad entry", errRelayMsg)
	}
	if se.Node == m.self {
		return "", errNotElsewhere
	}
	return se.Node, nil
}

// ensureEdge starts the relay id unless it runs (once, however many ask
// at the same time); it reports whether it runs.
func (m *Media) ensureEdge(ctx context.Context, id edgeID) bool {
	m.mu.Lock()
	if e := m.edges[id]; e != nil && e.ctx.Err() == nil {
		m.mu.Unlock()
		return true
	}
	if c, ok := m.starting[id]; ok {
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
	m.starting[id] = c
	m.mu.Unlock()

	e, err := m.startEdge(ctx, id)
	m.mu.Lock()
	delete(m.starting, id)
	if e != nil && e.ctx.Err() == nil {
		m.edges[id] = e
		c.ok = true
	}
	m.mu.Unlock()
	close(c.done)
	if err != nil {
		m.log.Debug("no relay", "room", id.name, "origin", id.origin, "err", err)
	}
	if c.ok {
		m.poke(id.scope) // the viewer may not come: the linger starts now
	}
	return c.ok
}

// startEdge asks the origin for the room's tracks, publishes them here
// and takes the first lease.
func (m *Media) startEdge(ctx context.Context, id edgeID) (*edge, error) {
	ctx, cancel := context.WithTimeout(ctx, m.c.opTimeout())
	defer cancel()
	e := &edge{m: m, id: id, prefix: mediaSubjects + id.origin + "." + id.key(), done: make(chan struct{}), srcs: map[string]*edgeSource{}}
	e.ctx, e.cancel = context.WithCancel(m.ctx)
	if err := e.addTracks(ctx); err != nil {
		e.teardown()
		return nil, err
	}
	if _, err := e.renew(ctx); err != nil {
		e.teardown()
		return nil, fmt.Errorf("lease on %s from %s: %w", id.name, id.origin, err)
	}
	m.log.Info("relaying a room's tracks from their node", "room", id.name, "origin", id.origin, "tracks", e.count())
	m.wg.Add(1)
	go e.run()
	return e, nil
}

func (e *edge) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.tracks)
}

// addTracks asks the origin for its tracks and relays those not relayed
// yet: at the start, and when the origin has more (a late track).
func (e *edge) addTracks(ctx context.Context) error {
	m := e.m
	msg, err := m.c.nc.RequestWithContext(ctx, e.prefix+".tracks", []byte(m.self))
	if err != nil {
		return fmt.Errorf("tracks of %s from %s: %w", e.id.name, e.id.origin, err)
	}
	tracks, err := decodeTracks(msg.Data)
	if err != nil {
		m.stats.Rejected.Add(1)
		return err
	}
	if err := e.claimName(len(tracks)); err != nil {
		return err
	}
	e.mu.Lock()
	known := map[string]bool{}
	for _, t := range e.tracks {
		known[t.tkey] = true
	}
	e.mu.Unlock()
	for _, t := range tracks {
		tkey := base64.RawURLEncoding.EncodeToString([]byte(t.ID))
		if known[tkey] {
			continue
		}
		if err := e.add(tkey, t); err != nil {
			return fmt.Errorf("relaying %s: %w", e.id.name, err)
		}
	}
	if err := m.c.nc.FlushWithContext(ctx); err != nil { // subscribed before the origin sends
		return fmt.Errorf("relaying %s: %w", e.id.name, err)
	}
	return nil
}

// claimName takes a stream's name here for the relay (once), as a
// local publisher of this many tracks would.
func (e *edge) claimName(tracks int) error {
	if e.id.ns != sfu.Streams || e.m.claim == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.claim != nil {
		return nil
	}
	c, err := e.m.claim(e.id.name, tracks)
	if err != nil {
		return fmt.Errorf("relaying %s here: %w", e.id.name, err)
	}
	e.claim = c
	return nil
}

// add publishes one of the origin's tracks here, fed from its subject.
func (e *edge) add(tkey string, t relayTrack) error {
	m := e.m
	e.mu.Lock()
	if len(e.tracks) >= maxRelayTrack {
		e.mu.Unlock()
		return fmt.Errorf("%w: more than %d tracks", errRelayMsg, maxRelayTrack)
	}
	et := &edgeTrack{e: e, tkey: tkey}
	ssrc := uint32(len(e.tracks) + 1)
	src := e.srcs[t.Publisher]
	if src == nil {
		src = &edgeSource{e: e, id: t.Publisher}
		e.srcs[t.Publisher] = src
	}
	e.tracks = append(e.tracks, et) // before publishing: keyframe requests may come at once
	e.mu.Unlock()
	var err error
	et.pub, err = m.sfu.Publish(e.id.ns, e.id.name, src, sfu.TrackSpec{TrackID: t.TrackID, StreamID: t.StreamID,
		Codec: t.codec(), Layers: []sfu.LayerSpec{{SSRC: ssrc}}, SharedClock: t.Shared})
	if err != nil {
		et.ended.Store(true)
		return err
	}
	m.stats.Relays.Add(1)
	m.stats.RelaysStarted.Add(1)
	e.mu.Lock()
	claim := e.claim
	e.mu.Unlock()
	if claim != nil {
		claim.Published(et.pub.Info()) // viewers waiting for the stream continue on it
	}
	sub, err := m.c.nc.Subscribe(e.prefix+".t."+tkey, et.receive)
	if err != nil {
		return err // teardown ends the publication
	}
	if err := sub.SetPendingLimits(relayPendingMsgs, relayPendingBytes); err != nil {
		m.log.Warn("bounding a relay's queue", "err", err)
	}
	e.mu.Lock()
	et.sub = sub
	e.mu.Unlock()
	return nil
}

var errOriginGone = errors.New("the origin no longer has the stream")

// renew asks the origin to keep sending; it returns the number of tracks
// the origin has.
func (e *edge) renew(ctx context.Context) (int, error) {
	msg, err := e.m.c.nc.RequestWithContext(ctx, e.prefix+".lease", []byte(e.m.self))
	if err != nil {
		return 0, err
	}
	n, ok := decodeLease(msg.Data)
	if !ok {
		return 0, errOriginGone
	}
	return n, nil
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
			n, err := e.renew(ctx)
			if err == nil && n > e.count() {
				if err := e.addTracks(ctx); err != nil {
					e.m.log.Warn("relaying a stream's new track", "stream", e.id.name, "err", err)
				}
			}
			cancel()
			switch {
			case errors.Is(err, errOriginGone):
				e.m.log.Info("the stream's origin no longer has it", "stream", e.id.name, "origin", e.id.origin)
				return
			case err != nil && e.ctx.Err() == nil:
				if fails++; fails >= 3 {
					e.m.log.Warn("the stream's origin does not answer; ending the relay", "stream", e.id.name, "origin", e.id.origin, "err", err)
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
	e.mu.Lock()
	tracks := e.tracks
	e.mu.Unlock()
	for _, t := range tracks {
		e.mu.Lock()
		sub := t.sub
		e.mu.Unlock()
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		if t.pub != nil {
			e.m.stats.Relays.Add(-1)
		}
		if t.ended.CompareAndSwap(false, true) {
			t.pub.End()
		}
	}
	e.mu.Lock()
	claim := e.claim
	e.claim = nil
	e.mu.Unlock()
	if claim != nil {
		claim.Release()
	}
	e.m.mu.Lock()
	if e.m.edges[e.id] == e {
		delete(e.m.edges, e.id)
	}
	e.m.mu.Unlock()
	close(e.done)
	e.m.log.Info("stream relay stopped", "stream", e.id.name, "origin", e.id.origin)
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
		e.timer = time.AfterFunc(e.m.lin, func() { e.m.poke(e.id.scope) })
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
			t.e.mu.Lock()
			defer t.e.mu.Unlock()
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

// haveSubject carries an origin's news that a group room has new tracks
// there: nodes with members in the room relay them.
const haveSubject = "parley.media.have"

// haveMsg is a message on haveSubject.
type haveMsg struct {
	Node string `json:"node"`
	Room string `json:"room"`
}

// announce tells the other nodes that the group room has new tracks here.
func (m *Media) announce(sc scope) {
	b, err := json.Marshal(haveMsg{Node: m.self, Room: sc.name})
	if err == nil {
		err = m.c.nc.Publish(haveSubject, b)
	}
	if err != nil {
		m.log.Warn("announcing a room's tracks", "room", sc.name, "err", err)
	}
}

// have takes another node's announcement: a room with local
// participants relays its tracks (a running relay asks for the new ones).
func (m *Media) have(msg *nats.Msg) {
	var h haveMsg
	if err := json.Unmarshal(msg.Data, &h); err != nil || !nodeIDRE.MatchString(h.Node) || len(h.Room) == 0 || len(h.Room) > maxRelayID {
		m.stats.Rejected.Add(1)
		return
	}
	if h.Node == m.self {
		return
	}
	sc := scope{sfu.Calls, h.Room}
	r, ok := m.sfu.LookupRoom(sc.ns, sc.name)
	if !ok || len(r.Participants()) == 0 {
		return
	}
	m.relayFrom(sc, []string{h.Node})
}

// findOrigins relays a group room's tracks from every other node that has
// some (a room's first local participant: the others announced theirs
// before).
func (m *Media) findOrigins(sc scope) {
	var nodes []string
	for _, n := range m.c.Nodes() {
		if n.ID != m.self {
			nodes = append(nodes, n.ID)
		}
	}
	m.relayFrom(sc, nodes)
}

// relayFrom starts (or updates) the room's relays from these nodes, in
// the background: each asks the node.
func (m *Media) relayFrom(sc scope, nodes []string) {
	if m.ctx.Err() != nil || len(nodes) == 0 {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for _, n := range nodes {
			id := edgeID{sc, n}
			m.mu.Lock()
			e := m.edges[id]
			m.mu.Unlock()
			if e != nil && e.ctx.Err() == nil {
				ctx, cancel := context.WithTimeout(e.ctx, m.c.opTimeout())
				if err := e.addTracks(ctx); err != nil {
					m.log.Debug("relaying a room's new tracks", "room", sc.name, "origin", n, "err", err)
				}
				cancel()
				continue
			}
			m.ensureEdge(m.ctx, id)
		}
	}()
}
