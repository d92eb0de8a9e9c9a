package sfu

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Source is anything that publishes tracks into a room: a WebRTC publisher
// (a Participant: browser, WHIP), an in-memory source in tests, and later
// RTSP/RTMP/SRT ingest and relays from other nodes. The core asks it only
// for keyframes.
type Source interface {
	// SourceID names the publisher in its room (TrackInfo.Publisher).
	SourceID() string
	// RequestKeyframe asks for a keyframe on the stream with this SSRC.
	// Requests are already rate-limited and coalesced; it must not block.
	RequestKeyframe(ssrc uint32)
}

// Sink is anything that consumes one track's packets: the WebRTC
// subscriber (a pion track bound to a Participant's connection) is one; an
// in-memory sink in tests, the HLS muxer, the recorder and node relays are
// others. WriteRTP is called from the subscription's own writer goroutine
// with the packet rewritten for the sink (its SSRC and payload type, a
// continuous sequence and timestamp space); it may block without delaying
// anyone else: while it does, the subscription's queue fills and then
// drops to the next keyframe. h and payload are only valid during the call.
type Sink interface {
	WriteRTP(h *rtp.Header, payload []byte) (int, error)
}

// TrackSpec describes a track that a Source publishes.
type TrackSpec struct {
	TrackID  string
	StreamID string
	Codec    webrtc.RTPCodecParameters // MimeType decides audio or video
	// Layers lists the simulcast RIDs with their SSRCs; empty means one
	// layer with RID "" and SSRC 1.
	Layers []LayerSpec
	// SharedClock says the RTP timestamps of this source's tracks that
	// set it count from one instant (timestamp = seconds since it × clock
	// rate, modulo 2^32): RTMP and SRT publishers, whose demuxers give
	// every track one clock. Sinks line such tracks up by timestamp
	// rather than by arrival.
	SharedClock bool
}

// LayerSpec is one RTP stream of a published track.
type LayerSpec struct {
	RID  string
	SSRC uint32
}

// Publication is a track published by a Source other than a pion peer:
// the source writes its packets with WriteRTP and ends it with End.
type Publication struct {
	up *upTrack
}

// ErrBadPacket is returned by Publication.WriteRTP for a packet that is
// not RTP or is too large.
var ErrBadPacket = errors.New("sfu: bad RTP packet")

// Publish adds a track of src to the room of namespace ns (created if
// needed); every auto-subscribing participant gets it. Packets go in
// through the returned Publication.
func (s *SFU) Publish(ns Namespace, room string, src Source, spec TrackSpec) (*Publication, error) {
	for range 3 {
		r, err := s.Room(ns, room)
		if err != nil {
			return nil, err
		}
		p, err := r.publish(src, spec)
		if errors.Is(err, ErrClosed) {
			continue // the room emptied and closed between lookup and publish
		}
		return p, err
	}
	return nil, fmt.Errorf("sfu: publish in %s: %w", room, ErrClosed)
}

func (r *Room) publish(src Source, spec TrackSpec) (*Publication, error) {
	if spec.TrackID == "" {
		return nil, errors.New("sfu: publish: empty track ID")
	}
	if codecKindOfMime(spec.Codec.MimeType) == 0 {
		return nil, fmt.Errorf("sfu: publish: %q is not an audio or video codec", spec.Codec.MimeType)
	}
	layers := spec.Layers
	if len(layers) == 0 {
		layers = []LayerSpec{{SSRC: 1}}
	}
	up := newUpTrack(r, src, spec.TrackID, spec.StreamID, spec.Codec)
	up.sharedClock = spec.SharedClock
	for _, ls := range layers {
		up.addLayer(ls.RID, ls.SSRC, 0, nil)
	}
	if !r.addTrack(up) {
		return nil, ErrClosed
	}
	return &Publication{up: up}, nil
}

// ID is the track's ID in the room (TrackInfo.ID).
func (p *Publication) ID() string { return p.up.id }

// WriteRTP publishes one RTP packet on the layer with this RID. Calls for
// one layer must come from one goroutine at a time (they stand in for the
// layer's reader); pkt is copied.
func (p *Publication) WriteRTP(rid string, pkt []byte) error {
	var l *layer
	for _, x := range *p.up.layersPtr.Load() {
		if x.rid == rid {
			l = x
			break
		}
	}
	if l == nil {
		return fmt.Errorf("sfu: publish: no layer %q (or the track ended)", rid)
	}
	if len(pkt) > maxPacketSize {
		return fmt.Errorf("%w: %d bytes", ErrBadPacket, len(pkt))
	}
	s := l.cache.reserve()
	s.n = copy(s.buf[:], pkt)
	if err := s.parse(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPacket, err)
	}
	l.ingest(s, p.up.now())
	return nil
}

// End unpublishes the track: its subscriptions end (Subscription.Done).
func (p *Publication) End() { p.up.end() }

// SinkOptions configure Room.Subscribe.
type SinkOptions struct {
	// SSRC and PayloadType are written into every packet; a zero
	// PayloadType keeps the publisher's.
	SSRC        uint32
	PayloadType uint8
	// MaxQuality caps the simulcast layer.
	MaxQuality Quality
	// RED keeps a RED track's packets as they are (RFC 2198, red.go: a
	// relay to another node); otherwise the sink gets the Opus inside,
	// and PayloadType 0 means the publisher's number for that.
	RED bool
	// Sticky keeps the sink on the simulcast layer it got first for as long
	// as that layer runs (paused for less than stickyIdle), instead of
	// following the highest layer up and down: a muxer or recorder then
	// sees one resolution, not a change each time the publisher's browser
	// pauses or resumes a layer.
	Sticky bool
}

// Subscription is a Sink attached to a published track.
type Subscription struct {
	d     *downTrack
	ended chan struct{}
}

// Subscribe attaches sink to the track with this TrackInfo.ID. The sink
// starts on a keyframe (replayed from the cache when one is there).
func (r *Room) Subscribe(trackID string, sink Sink, opts SinkOptions) (*Subscription, error) {
	u, err := r.track(trackID)
	if err != nil {
		return nil, err
	}
	pr := &prefs{}
	pr.maxLayer.Store(opts.MaxQuality.rank())
	d := newDownTrack(r, u, pr, r.sfu.log.With("room", r.name, "sink", trackID), nil)
	sub := &Subscription{d: d, ended: make(chan struct{})}
	d.onEnded = func(d *downTrack, _ *upTrack) {
		close(sub.ended)
		d.close()
	}
	pt := opts.PayloadType
	switch {
	case pt != 0:
	case u.redPT != 0 && !opts.RED:
		pt = u.innerPT
	default:
		pt = uint8(u.codec.PayloadType)
	}
	d.sticky = opts.Sticky
	u.subs.add(d)
	d.bind(opts.SSRC, pt, sink, u.redPT != 0 && opts.RED, u.innerPT)
	return sub, nil
}

// Done is closed when the track ended.
func (s *Subscription) Done() <-chan struct{} { return s.ended }

// Close detaches the sink; its writer ends after a write in progress.
func (s *Subscription) Close() { s.d.close() }

// RequestKeyframe asks the track's publisher for a keyframe, as a
// subscriber's PLI does (rate-limited per layer; sources that cannot be
// asked, such as RTMP, ignore it).
func (s *Subscription) RequestKeyframe() { s.d.requestKeyframe() }

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SinkStats { return s.d.stats() }

// codecKindOfMime tells audio from video by MIME type; 0 for neither.
func codecKindOfMime(mime string) webrtc.RTPCodecType {
	switch {
	case strings.HasPrefix(strings.ToLower(mime), "audio/"):
		return webrtc.RTPCodecTypeAudio
	case strings.HasPrefix(strings.ToLower(mime), "video/"):
		return webrtc.RTPCodecTypeVideo
	}
	return 0
}

// Info describes the published track as the room lists it.
func (p *Publication) Info() TrackInfo { return p.up.info() }
