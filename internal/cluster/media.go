package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/rtp"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/sfu"
)

// Streams across nodes: a stream published on one node (its origin: WHIP,
// RTMP, RTSP, SRT, a camera — anything that publishes into the SFU's
// streams namespace) can be watched on any other node (an edge). The
// relay is a sink on the origin and a source on the edge, and its
// transport is NATS itself: the origin's subscription to a track
// publishes each packet on the track's subject, and every edge that
// relays the stream subscribes to it, so NATS fans the packets out (an
// origin → edge tree without the origin sending once per edge).
//
// The origin announces its streams in the streams bucket (one key per
// stream naming its node, rewritten every TTL/3, deleted when the stream
// ends). An edge starts a relay when its first viewer asks for a stream
// it does not have (the WHEP handler's Demand): it reads the owner, asks
// it for the tracks and their codecs, publishes them in its own SFU,
// subscribes to their subjects and then takes a lease that makes the
// origin send; the lease is renewed every TTL/3 and the origin stops
// sending a TTL after the last lease ran out (or at once on bye). Exactly
// one relay per track per edge node, however many viewers it has; it
// stops Linger after the edge's last viewer left. Keyframe requests go
// back on the stream's .pli subject; a track that ends on the origin
// ends on every edge. See media_wire.go for the subjects and messages.

// MediaOptions configure the media relay.
type MediaOptions struct {
	SFU *sfu.SFU
	// Linger is how long an edge keeps a relay after its last viewer left
	// (default 3 s).
	Linger time.Duration
	// Claim, when set, takes a relayed stream's name on this node while
	// its relay runs, as a local publisher would (WHEP viewers waiting
	// for the stream's return continue on the relayed tracks; a local
	// publisher of the name is refused meanwhile). nil claims nothing.
	Claim ingest.Claimer
	// OnStream, when set, is told (never under a lock of the relay's)
	// each time another node starts or stops being a stream's origin, as
	// the streams bucket says (Elsewhere).
	OnStream func(stream string)
	Logger   *slog.Logger
}

// Media relays streams between this node and the others.
type Media struct {
	c    *Cluster
	sfu  *sfu.SFU
	log  *slog.Logger
	self string
	ttl  time.Duration
	lin  time.Duration

	claim    ingest.Claimer
	onStream func(stream string)

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	sub     *nats.Subscription // parley.media.<self>.*.*: requests to the origin
	haveSub *nats.Subscription // haveSubject: group rooms' new tracks on other nodes
	wake    chan struct{}      // one slot: dirty streams to look at

	dmu   sync.Mutex
	dirty map[scope]struct{} // rooms whose SFU room changed

	mu       sync.Mutex
	kv       jetstream.KeyValue
	origins  map[scope]*origin
	edges    map[edgeID]*edge
	starting map[edgeID]*startCall // edges being started
	found    map[scope]bool        // group rooms with local members (their origins were looked for)
	remote   map[string]string     // streams whose origin is another node → that node (media_watch.go)

	stats MediaStats
}

// MediaStats count the relays (for /metrics and tests).
type MediaStats struct {
	Streams       atomic.Int64  // streams this node is the announced origin of, now
	Relays        atomic.Int64  // tracks this node relays in from an origin, now
	RelaysStarted atomic.Uint64 // such tracks started, in total
	Sending       atomic.Int64  // tracks this node sends to edges, now
	PacketsOut    atomic.Uint64 // RTP packets published to NATS
	BytesOut      atomic.Uint64 // their bytes (the messages' bodies)
	PacketsIn     atomic.Uint64 // RTP packets received and published here
	Rejected      atomic.Uint64 // messages from NATS that failed the checks
}

const streamsBucket = "parley_streams"

// streamEntry is a stream's entry in the streams bucket.
type streamEntry struct {
	Stream string    `json:"stream"`
	Node   string    `json:"node"`
	Since  time.Time `json:"since"`
}

// StartMedia starts relaying streams; Close stops it (before the
// cluster closes).
func (c *Cluster) StartMedia(o MediaOptions) (*Media, error) {
	if o.SFU == nil {
		return nil, errors.New("cluster: media needs the SFU")
	}
	if o.Linger <= 0 {
		o.Linger = 3 * time.Second
	}
	log := c.log
	if o.Logger != nil {
		log = o.Logger.With("plane", "cluster", "node", c.opts.Node.ID)
	}
	m := &Media{c: c, sfu: o.SFU, log: log.With("relay", "media"), self: c.opts.Node.ID, ttl: c.opts.TTL, lin: o.Linger,
		claim: o.Claim, onStream: o.OnStream, wake: make(chan struct{}, 1), dirty: map[scope]struct{}{},
		origins: map[scope]*origin{}, edges: map[edgeID]*edge{}, starting: map[edgeID]*startCall{}, found: map[scope]bool{},
		remote: map[string]string{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	var err error
	if m.sub, err = c.nc.Subscribe(mediaSubjects+m.self+".*.*", m.request); err != nil {
		return nil, fmt.Errorf("cluster: subscribe to media requests: %w", err)
	}
	if m.haveSub, err = c.nc.Subscribe(haveSubject, m.have); err == nil {
		err = c.nc.Flush()
	}
	if err != nil {
		_ = m.sub.Unsubscribe()
		if m.haveSub != nil {
			_ = m.haveSub.Unsubscribe()
		}
		return nil, fmt.Errorf("cluster: subscribe to media requests: %w", err)
	}
	m.wg.Add(2)
	go m.run()
	go m.watchStreams()
	return m, nil
}

// Stats are the relay's counters.
func (m *Media) Stats() *MediaStats { return &m.stats }

// Close stops every relay: edges' viewers see their streams end, and
// this node's streams leave the bucket.
func (m *Media) Close() {
	m.cancel()
	_ = m.sub.Unsubscribe()
	_ = m.haveSub.Unsubscribe()
	m.wg.Wait()
	m.mu.Lock()
	edges := slices.Collect(maps.Values(m.edges))
	origins := m.origins
	m.origins = map[scope]*origin{}
	kv := m.kv
	m.mu.Unlock()
	for _, e := range edges {
		e.cancel()
	}
	for _, e := range edges {
		<-e.done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, o := range origins {
		m.stopOrigin(ctx, kv, o)
	}
}

// scope is a relayed SFU room: a stream, or a group room.
type scope struct {
	ns   sfu.Namespace
	name string
}

// key names the room in subjects.
func (s scope) key() string {
	if s.ns == sfu.Calls {
		return roomKey("c/" + s.name)
	}
	return roomKey("s/" + s.name)
}

// edgeID is one relay into this node: a room from one origin node.
type edgeID struct {
	scope
	origin string
}

// RoomChanged is told of every change of an SFU room (the SFU's
// OnRoomChange); it never blocks.
func (m *Media) RoomChanged(ns sfu.Namespace, name string) {
	if ns != sfu.Streams && ns != sfu.Calls {
		return
	}
	m.poke(scope{ns, name})
}

func (m *Media) poke(sc scope) {
	m.dmu.Lock()
	m.dirty[sc] = struct{}{}
	m.dmu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// run looks at changed streams and, every TTL/3, rewrites the origin's
// entries and drops edges whose lease ran out.
func (m *Media) run() {
	defer m.wg.Done()
	tick := time.NewTicker(m.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
			m.dmu.Lock()
			dirty := m.dirty
			m.dirty = map[scope]struct{}{}
			m.dmu.Unlock()
			for s := range dirty {
				m.look(s)
			}
		case <-tick.C:
			m.refresh()
		}
	}
}

// streamsKV opens (creating when missing) the streams bucket.
func (m *Media) streamsKV(ctx context.Context) (jetstream.KeyValue, error) {
	m.mu.Lock()
	kv := m.kv
	m.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := m.c.bucket(ctx, streamsBucket, "Parley streams' origin nodes")
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.kv = kv
	m.mu.Unlock()
	return kv, nil
}

// putOrigin writes the stream's entry naming this node.
func (m *Media) putOrigin(stream string) error {
	kv, err := m.streamsKV(m.ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(streamEntry{Stream: stream, Node: m.self, Since: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("encode stream entry: %w", err)
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.c.opTimeout())
	defer cancel()
	if _, err := kv.Put(ctx, roomKey(stream), b); err != nil {
		m.mu.Lock()
		m.kv = nil // NATS may have restarted without the bucket: open it again next time
		m.mu.Unlock()
		return fmt.Errorf("announce stream %s: %w", stream, err)
	}
	return nil
}

// look brings a room's relay state in line with its SFU room: local
// tracks make this node an origin; an edge whose room has had no local
// participant for Linger stops; a group room with local participants
// relays the tracks other nodes have in it.
func (m *Media) look(sc scope) {
	r, ok := m.sfu.LookupRoom(sc.ns, sc.name)
	var local []sfu.TrackInfo
	viewers := 0
	if ok {
		viewers = len(r.Participants())
		for _, ti := range r.Tracks() {
			if _, src, err := r.TrackSpecOf(ti.ID); err == nil {
				if _, relayed := src.(*edgeSource); !relayed {
					local = append(local, ti)
				}
			}
			// Readers that are no participant (LL-HLS, RTSP, RTMP
			// through internal/tap) subscribe as stand-alone sinks.
			viewers = max(viewers, ti.Subscribers)
		}
	}
	m.mu.Lock()
	o := m.origins[sc]
	var edges []*edge
	for id, e := range m.edges {
		if id.scope == sc {
			edges = append(edges, e)
		}
	}
	find := sc.ns == sfu.Calls && viewers > 0 && !m.found[sc]
	if find {
		m.found[sc] = true
	} else if viewers == 0 {
		delete(m.found, sc)
	}
	m.mu.Unlock()
	if o != nil && (len(local) == 0 || o.room != r) { // ended, or the room is a new one
		m.mu.Lock()
		delete(m.origins, sc)
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(m.ctx, m.c.opTimeout())
		var kv jetstream.KeyValue
		if sc.ns == sfu.Streams {
			// Opened again when a watch or write error let it go: skipping
			// the delete would leave the stream live elsewhere until its
			// entry expired, and an expiry tells the watchers nothing.
			kv, _ = m.streamsKV(ctx)
		}
		m.stopOrigin(ctx, kv, o)
		cancel()
		o = nil
	}
	switch {
	case len(local) > 0 && o == nil:
		o = &origin{m: m, sc: sc, key: sc.key(), room: r, tracks: map[string]*originTrack{}, edges: map[string]time.Time{}}
		o.sync(local)
		m.mu.Lock()
		m.origins[sc] = o
		m.mu.Unlock()
		if sc.ns == sfu.Streams {
			m.announceStream(o)
		} else {
			m.announce(sc)
		}
	case o != nil:
		if o.sync(local) && sc.ns == sfu.Calls {
			m.announce(sc)
		}
	}
	for _, e := range edges {
		e.idle(viewers)
	}
	if find {
		m.findOrigins(sc)
	}
}

// refresh rewrites the origin's entries, lets expired leases go, and
// looks again for other nodes' tracks in the group rooms with local
// members (a node missed, or a relay that ended while NATS was away).
func (m *Media) refresh() {
	m.mu.Lock()
	origins := slices.Collect(maps.Values(m.origins))
	var rooms []scope
	for sc := range m.found {
		rooms = append(rooms, sc)
	}
	m.mu.Unlock()
	for _, sc := range rooms {
		m.findOrigins(sc)
	}
	now := time.Now()
	for _, o := range origins {
		if o.sc.ns == sfu.Streams {
			m.announceStream(o)
		}
		o.expire(now)
	}
}

// announceStream writes (rewrites) the stream's entry naming this node.
func (m *Media) announceStream(o *origin) {
	if err := m.putOrigin(o.sc.name); err != nil {
		m.log.Warn("announcing a stream", "stream", o.sc.name, "err", err)
		return
	}
	if !o.announced {
		o.announced = true
		m.stats.Streams.Add(1)
	}
}

// stopOrigin ends a stream this node was the origin of: its tracks end on
// every edge and its entry is deleted.
func (m *Media) stopOrigin(ctx context.Context, kv jetstream.KeyValue, o *origin) {
	o.sync(nil)
	if o.announced {
		m.stats.Streams.Add(-1)
	}
	if kv == nil || o.sc.ns != sfu.Streams {
		return
	}
	// Only our own entry: another node may have taken the name since.
	e, err := kv.Get(ctx, o.key)
	if err != nil {
		return
	}
	var se streamEntry
	if json.Unmarshal(e.Value(), &se) == nil && se.Node == m.self {
		if err := kv.Delete(ctx, o.key, jetstream.LastRevision(e.Revision())); err != nil {
			m.log.Debug("deleting a stream's entry", "stream", o.sc.name, "err", err)
		}
	}
}

// request answers an edge's request to this node as an origin:
// parley.media.<self>.<stream>.<op>.
func (m *Media) request(msg *nats.Msg) {
	rest := strings.TrimPrefix(msg.Subject, mediaSubjects+m.self+".")
	key, op, ok := strings.Cut(rest, ".")
	if !ok {
		return
	}
	m.mu.Lock()
	var o *origin
	for _, x := range m.origins { // few streams per node; keys are base64 of names
		if x.key == key {
			o = x
			break
		}
	}
	m.mu.Unlock()
	reply := func(b []byte) {
		if msg.Reply != "" {
			_ = msg.Respond(b)
		}
	}
	switch op {
	case "tracks":
		if o == nil {
			reply([]byte(`{"tracks":[],"err":"not live here"}`))
			return
		}
		b, err := json.Marshal(relayTracks{Tracks: o.describe()})
		if err != nil {
			reply([]byte(`{"tracks":[],"err":"encoding"}`))
			return
		}
		reply(b)
	case "lease":
		node := string(msg.Data)
		if o == nil || !nodeIDRE.MatchString(node) {
			reply([]byte(relayGone))
			return
		}
		reply(appendLease(nil, o.lease(node, time.Now().Add(m.ttl))))
	case "bye":
		if o != nil && nodeIDRE.MatchString(string(msg.Data)) {
			o.bye(string(msg.Data))
		}
	case "pli":
		if o != nil {
			o.keyframe(string(msg.Data))
		}
	default:
		m.stats.Rejected.Add(1)
	}
}

// origin is a stream published on this node, as relayed to edges.
type origin struct {
	m         *Media
	sc        scope
	key       string
	room      *sfu.Room
	announced bool // a stream counted in MediaStats.Streams (the run goroutine's)

	mu     sync.Mutex
	tracks map[string]*originTrack // by TrackInfo.ID: the local tracks
	edges  map[string]time.Time    // edge node → lease end
}

// originTrack is one local track; sub is set while edges hold leases.
type originTrack struct {
	m       *Media
	info    sfu.TrackInfo
	tkey    string
	subject string
	sub     *sfu.Subscription
}

// relaySink is one subscription's sink (its buffer is its writer
// goroutine's own).
type relaySink struct {
	t   *originTrack
	buf []byte
}

// sync takes the room's current local tracks: tracks that ended end on
// the edges (an 'e' message); new ones are sent if edges are there. It
// reports whether there were new ones.
func (o *origin) sync(local []sfu.TrackInfo) (added bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := map[string]sfu.TrackInfo{}
	for _, ti := range local {
		now[ti.ID] = ti
	}
	for id, t := range o.tracks {
		if _, ok := now[id]; !ok {
			t.stop(true)
			delete(o.tracks, id)
		}
	}
	for id, ti := range now {
		if _, ok := o.tracks[id]; !ok {
			tkey := base64.RawURLEncoding.EncodeToString([]byte(id))
			o.tracks[id] = &originTrack{m: o.m, info: ti, tkey: tkey, subject: mediaSubjects + o.m.self + "." + o.key + ".t." + tkey}
			added = true
		}
	}
	if len(o.edges) > 0 {
		o.sendLocked()
	}
	return added
}

// describe lists the tracks for an edge.
func (o *origin) describe() []relayTrack {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]relayTrack, 0, len(o.tracks))
	for id := range o.tracks {
		spec, src, err := o.room.TrackSpecOf(id)
		if err != nil {
			continue
		}
		c := spec.Codec
		out = append(out, relayTrack{ID: id, Publisher: src.SourceID(), TrackID: spec.TrackID, StreamID: spec.StreamID, Mime: c.MimeType, Clock: c.ClockRate,
			Channels: c.Channels, Fmtp: c.SDPFmtpLine, PT: uint8(c.PayloadType), Shared: spec.SharedClock})
	}
	return out
}

// lease lets an edge have the stream's packets until the lease ends; it
// returns the number of tracks.
func (o *origin) lease(node string, until time.Time) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.edges[node] = until
	o.sendLocked()
	return len(o.tracks)
}

func (o *origin) bye(node string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.edges, node)
	if len(o.edges) == 0 {
		o.quietLocked()
	}
}

// expire drops leases that ended; with none left nothing is sent.
func (o *origin) expire(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for n, until := range o.edges {
		if now.After(until) {
			delete(o.edges, n)
		}
	}
	if len(o.edges) == 0 {
		o.quietLocked()
	}
}

// sendLocked subscribes a sink to every track not yet sent.
func (o *origin) sendLocked() {
	for id, t := range o.tracks {
		if t.sub != nil {
			continue
		}
		sub, err := o.room.Subscribe(id, &relaySink{t: t}, sfu.SinkOptions{RED: true}) // as published: the edge forwards RED too
		if err != nil {
			o.m.log.Debug("relaying a track", "room", o.sc.name, "track", id, "err", err)
			continue
		}
		t.sub = sub
		o.m.stats.Sending.Add(1)
	}
}

func (o *origin) quietLocked() {
	for _, t := range o.tracks {
		t.stop(false)
	}
}

func (o *origin) keyframe(tkey string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range o.tracks {
		if t.tkey == tkey && t.sub != nil {
			t.sub.RequestKeyframe()
		}
	}
}

// stop detaches the sink; ended tells the edges the track is over.
func (t *originTrack) stop(ended bool) {
	if t.sub != nil {
		t.sub.Close()
		t.sub = nil
		t.m.stats.Sending.Add(-1)
	}
	if ended {
		if err := t.m.c.nc.Publish(t.subject, []byte{msgEnd}); err != nil {
			t.m.log.Warn("telling edges a track ended", "track", t.info.ID, "err", err)
		}
	}
}

// WriteRTP is the sink: one packet to every edge.
func (s *relaySink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	t := s.t
	b, err := appendRTPMsg(s.buf[:0], h, payload)
	s.buf = b
	if err != nil {
		return 0, err
	}
	if err := t.m.c.nc.Publish(t.subject, b); err != nil { // copied into the connection's buffer
		return 0, fmt.Errorf("cluster: relay: %w", err)
	}
	t.m.stats.PacketsOut.Add(1)
	t.m.stats.BytesOut.Add(uint64(len(b)))
	return len(payload), nil
}
