package sfu

import (
	"errors"
	"io"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// pliInterval is the minimum spacing of keyframe requests sent to a publisher
// for one layer; requests from all subscribers are coalesced into it.
const pliInterval = 500 * time.Millisecond

// layerIdle is how long a simulcast layer may go without packets before
// subscribers stop choosing it (retargeting runs about once a second).
const layerIdle = 700 * time.Millisecond

// stickyIdle is how long a sticky sink's layer may pause before the sink
// moves to another (SinkOptions.Sticky).
const stickyIdle = 3 * time.Second

// upTrack is one published track: a single layer, or up to three simulcast
// layers that share one RTPReceiver.
type upTrack struct {
	room     *Room
	src      Source
	id       string // unique in the room: "<publisher>/<track id>"
	trackID  string
	streamID string
	// sharedClock is TrackSpec.SharedClock: set before the track is added
	// to its room, read-only after.
	sharedClock bool
	kind        webrtc.RTPCodecType
	codec       webrtc.RTPCodecParameters
	ck          codecKind
	redPT       uint8 // RED (red.go): the publisher's payload type for it, 0 none; its packets of another type are plain Opus
	innerPT     uint8 // with redPT: the publisher's payload type of the Opus inside
	epoch       time.Time

	mu     sync.Mutex
	layers []*layer // sorted by rank
	closed bool

	layersPtr atomic.Pointer[[]*layer] // copy-on-write view of layers
	subs      cowList[*downTrack]      // subscriptions
	level     atomic.Uint64            // audio loudness accumulated since the last speaker tick
	held      atomic.Bool              // muted by a moderator: cached, not forwarded (Room.HoldTrack)
	wg        sync.WaitGroup           // layer readers
	done      chan struct{}            // closed when the track has ended
}

// layer is one RTP stream of a published track, with its reader and cache.
type layer struct {
	up       *upTrack
	rank     int
	rid      string
	remote   *webrtc.TrackRemote
	ssrc     uint32
	cache    *packetCache
	levelExt uint8 // negotiated id of the audio-level extension, 0 if none

	lastPLI atomic.Int64  // ns since epoch of the last keyframe request
	bitrate atomic.Uint64 // measured bits per second
	keyAt   atomic.Int64  // ns since epoch of the last keyframe seen
	keySeq  atomic.Int32  // sequence number of the last keyframe start, -1 if none
	keyTS   uint32        // its RTP timestamp (the ingesting goroutine's)
	lastAt  atomic.Int64  // ns since epoch of the last packet (a publisher pauses layers it cannot afford)
	// received counts the layer's packets and fanout the time each took to
	// queue for every subscriber; per layer (no core shares them), summed
	// when scraped.
	received atomic.Uint64
	fanout   [fanoutBuckets]atomic.Uint64
	retired  bool // counted in the SFU totals (under counters.statsMu)

	// owned by the reader goroutine
	winBytes uint64
	winStart int64
	nack     *nackTracker // nil: the publisher takes no NACKs (nackgen.go)
	nackTo   nackSender
}

func newUpTrack(r *Room, src Source, trackID, streamID string, codec webrtc.RTPCodecParameters) *upTrack {
	up := &upTrack{
		room:     r,
		src:      src,
		trackID:  trackID,
		streamID: streamID,
		kind:     codecKindOfMime(codec.MimeType),
		codec:    codec,
		epoch:    time.Now(),
		done:     make(chan struct{}),
	}
	up.id = src.SourceID() + "/" + trackID
	up.ck = codecKindOf(up.codec.MimeType)
	if isRED(codec.MimeType) {
		up.redPT, up.innerPT = uint8(codec.PayloadType), redInnerPT(codec.SDPFmtpLine)
	}
	noLayers := []*layer{}
	up.layersPtr.Store(&noLayers)
	return up
}

func (u *upTrack) now() int64 { return int64(time.Since(u.epoch)) }

func (u *upTrack) isVideo() bool { return u.kind == webrtc.RTPCodecTypeVideo }

// addLayer registers a stream of the track (a simulcast layer, or its only
// one). A pion layer gets its own reader goroutine (run); other sources
// write packets themselves (Publication.WriteRTP).
func (u *upTrack) addLayer(rid string, ssrc uint32, levelExt uint8, remote *webrtc.TrackRemote) *layer {
	l := &layer{
		up:       u,
		rank:     layerRank(rid),
		rid:      rid,
		remote:   remote,
		ssrc:     ssrc,
		levelExt: levelExt,
	}
	l.keySeq.Store(-1)
	l.lastAt.Store(u.now()) // pion reports a layer with its first packet
	if ns, ok := u.src.(nackSender); ok && remote != nil && u.isVideo() && takesNACK(u.codec) {
		l.nack, l.nackTo = new(nackTracker), ns
	}
	if u.isVideo() {
		l.cache = newPacketCache(cacheVideo)
	} else {
		l.cache = newPacketCache(cacheAudio)
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.layers = append(u.layers, l)
	sort.SliceStable(u.layers, func(i, j int) bool { return u.layers[i].rank < u.layers[j].rank })
	cp := append([]*layer(nil), u.layers...)
	u.layersPtr.Store(&cp)
	if remote != nil {
		u.wg.Add(1)
	}
	u.mu.Unlock()

	if remote != nil {
		go func() {
			defer u.wg.Done()
			l.run()
		}()
	}
	for _, d := range u.subs.load() {
		d.retarget()
	}
	return l
}

// run is the layer's reader: the only goroutine reading this stream. It
// fills the packet cache in place and fans each packet out.
func (l *layer) run() {
	for {
		s := l.cache.reserve()
		n, _, err := l.remote.Read(s.buf[:])
		if err != nil {
			if !errors.Is(err, io.EOF) {
				l.up.room.sfu.log.Debug("track reader ended", "track", l.up.id, "rid", l.rid, "err", err)
			}
			l.up.layerEnded(l)
			return
		}
		s.n = n
		if err := s.parse(); err != nil {
			continue
		}
		now := l.up.now()
		if l.nack != nil {
			if seqs := l.nack.receive(s.hdr.SequenceNumber, now); seqs != nil {
				l.nackTo.SendNACK(l.ssrc, seqs)
			}
		}
		l.ingest(s, now)
	}
}

// ingest records one parsed packet and forwards it.
func (l *layer) ingest(s *slot, now int64) {
	u := l.up
	s.keyframe = u.isVideo() && isKeyframeStart(u.ck, s.payload())
	s.hasLevel = false
	if l.levelExt != 0 {
		if ext := s.hdr.GetExtension(l.levelExt); len(ext) > 0 {
			s.level, s.hasLevel = ext[0], true
		}
	}
	l.cache.commit(s)
	l.lastAt.Store(now)
	l.received.Add(1)
	if s.keyframe {
		l.keyAt.Store(now)
		// An H.264 keyframe is SPS, PPS, then IDR, all starts: a replay
		// begins at the access unit's first packet, not at its IDR.
		if l.keySeq.Load() < 0 || s.hdr.Timestamp != l.keyTS {
			l.keySeq.Store(int32(s.hdr.SequenceNumber))
			l.keyTS = s.hdr.Timestamp
		}
	}
	if u.held.Load() {
		return // muted by a moderator: neither forwarded nor heard as a speaker
	}
	if l.levelExt != 0 {
		if lv, _, ok := audioLevel(s.hdr.GetExtension(l.levelExt)); ok && lv <= speakerThreshold {
			u.level.Add(uint64(127 - lv))
		}
	}
	l.measure(s, now)
	l.fanOut(s, now)
	l.observeFanOut(u.now() - now)
}

// fanOut queues one cached packet for every subscriber's writer. It must
// not allocate or block: a slow subscriber drops, never the others.
func (l *layer) fanOut(s *slot, now int64) {
	for _, d := range l.up.subs.load() {
		d.enqueue(l, s, now)
	}
}

func (l *layer) observeFanOut(ns int64) {
	us := uint64(max(ns/1000, 1))
	b := 63 - bits.LeadingZeros64(us)
	l.fanout[min(b, fanoutBuckets-1)].Add(1)
}

// measure keeps a one-second bitrate estimate of the layer.
func (l *layer) measure(s *slot, now int64) {
	l.winBytes += uint64(s.n)
	if l.winStart == 0 {
		l.winStart = now
		return
	}
	if el := now - l.winStart; el >= int64(time.Second) {
		l.bitrate.Store(l.winBytes * 8 * uint64(time.Second) / uint64(el))
		l.winBytes, l.winStart = 0, now
		if len(*l.up.layersPtr.Load()) > 1 {
			for _, d := range l.up.subs.load() {
				d.retarget()
			}
		}
	}
}

// requestKeyframe sends a PLI for layer l, at most once per pliInterval.
func (l *layer) requestKeyframe() {
	u := l.up
	if !u.isVideo() {
		return
	}
	now := u.now()
	last := l.lastPLI.Load()
	if last != 0 && now-last < int64(pliInterval) {
		return
	}
	if !l.lastPLI.CompareAndSwap(last, now) {
		return
	}
	u.room.sfu.counters.plis.Add(1)
	u.src.RequestKeyframe(l.ssrc)
}

// layerEnded removes a stopped layer; the track ends with its last layer.
func (u *upTrack) layerEnded(l *layer) {
	u.room.sfu.retireLayer(l)
	u.mu.Lock()
	for i, x := range u.layers {
		if x == l {
			u.layers = append(u.layers[:i:i], u.layers[i+1:]...)
			break
		}
	}
	cp := append([]*layer(nil), u.layers...)
	u.layersPtr.Store(&cp)
	last := len(u.layers) == 0 && !u.closed
	if last {
		u.closed = true
	}
	u.mu.Unlock()
	if last {
		close(u.done)
		u.room.removeTrack(u)
		return
	}
	for _, d := range u.subs.load() {
		d.retarget()
	}
}

// end stops accepting layers; pion readers finish when the PeerConnection
// closes.
func (u *upTrack) end() {
	u.mu.Lock()
	wasClosed := u.closed
	u.closed = true
	var retired []*layer
	for _, l := range u.layers {
		if l.remote == nil {
			retired = append(retired, l) // no reader to end it
		}
	}
	u.mu.Unlock()
	for _, l := range retired {
		u.room.sfu.retireLayer(l)
	}
	if !wasClosed {
		close(u.done)
		u.room.removeTrack(u)
	}
}

func (u *upTrack) subscriberCount() int { return len(u.subs.load()) }

// TrackInfo describes a published track.
type TrackInfo struct {
	ID          string   `json:"id"` // unique in the room
	TrackID     string   `json:"track_id"`
	StreamID    string   `json:"stream_id"`
	Kind        string   `json:"kind"` // "audio" or "video"
	Codec       string   `json:"codec"`
	Publisher   string   `json:"publisher"`
	Layers      []string `json:"layers,omitempty"` // simulcast RIDs, lowest first
	Subscribers int      `json:"subscribers"`
	Muted       bool     `json:"muted,omitempty"` // held by a moderator (Room.HoldTrack)
	// Bitrate is what the publisher sends, all layers, in bit/s over the
	// last second.
	Bitrate uint64 `json:"bitrate"`
	// SharedClock is TrackSpec.SharedClock.
	SharedClock bool `json:"-"`
}

func (u *upTrack) info() TrackInfo {
	ti := TrackInfo{
		ID: u.id, TrackID: u.trackID, StreamID: u.streamID, Kind: u.kind.String(),
		Codec: mediaMime(u.codec.MimeType), Publisher: u.src.SourceID(), Subscribers: u.subscriberCount(),
		Muted: u.held.Load(), SharedClock: u.sharedClock,
	}
	for _, l := range *u.layersPtr.Load() {
		if l.rid != "" {
			ti.Layers = append(ti.Layers, l.rid)
		}
		ti.Bitrate += l.bitrate.Load()
	}
	return ti
}

// bestCodec picks, of a subscriber's codecs, the one to carry pub's
// packets: the first that can (sameCodec), but the same H.264 profile,
// and RED as RED (red.go), when the subscriber has them; nil when none can.
func bestCodec(pub webrtc.RTPCodecCapability, sub []webrtc.RTPCodecParameters) *webrtc.RTPCodecParameters {
	var match *webrtc.RTPCodecParameters
	for i := range sub {
		c := sub[i].RTPCodecCapability
		if !sameCodec(pub, c) {
			continue
		}
		if match == nil || (codecKindOf(pub.MimeType) == codecH264 && h264ProfileMatch(pub, c)) ||
			(isRED(c.MimeType) && !isRED(match.MimeType)) {
			match = &sub[i]
		}
	}
	return match
}

// sameCodec reports whether a subscriber codec can carry the publisher's.
func sameCodec(pub webrtc.RTPCodecCapability, sub webrtc.RTPCodecCapability) bool {
	if isRED(pub.MimeType) { // forwarded as RED, or as the Opus inside
		return isRED(sub.MimeType) || strings.EqualFold(sub.MimeType, webrtc.MimeTypeOpus)
	}
	if !strings.EqualFold(pub.MimeType, sub.MimeType) {
		return false
	}
	if !strings.EqualFold(pub.MimeType, webrtc.MimeTypeH264) {
		return true
	}
	pp, sp := fmtpMap(pub.SDPFmtpLine), fmtpMap(sub.SDPFmtpLine)
	pm, sm := pp["packetization-mode"], sp["packetization-mode"]
	if pm == "" {
		pm = "0"
	}
	if sm == "" {
		sm = "0"
	}
	return pm == sm
}

// h264ProfileMatch reports an exact profile_idc match, preferred over any H.264.
func h264ProfileMatch(pub, sub webrtc.RTPCodecCapability) bool {
	a, b := fmtpMap(pub.SDPFmtpLine)["profile-level-id"], fmtpMap(sub.SDPFmtpLine)["profile-level-id"]
	return len(a) >= 2 && len(b) >= 2 && strings.EqualFold(a[:2], b[:2])
}

func fmtpMap(line string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k != "" {
			m[strings.ToLower(k)] = v
		}
	}
	return m
}
