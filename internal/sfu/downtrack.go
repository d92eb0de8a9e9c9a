package sfu

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// How many recently sent packets a down-track remembers for mapping NACKed
// (rewritten) sequence numbers back to cached packets (powers of two).
const (
	histVideo = 512 // ~4 s at 1 Mbit/s
	histAudio = 64  // ~1.3 s of 20 ms frames
)

type histEntry struct {
	layer *layer
	out   uint16 // sequence number as sent
	in    uint16 // sequence number in the layer's cache
	ts    uint32 // timestamp as sent
}

// downTrack is one subscription: a webrtc.TrackLocal bound to the
// subscriber's PeerConnection. It rewrites SSRC, payload type, sequence
// numbers and timestamps, so that simulcast layer switches and publisher
// restarts look like one continuous stream to the subscriber.
type downTrack struct {
	p        *Participant
	up       atomic.Pointer[upTrack]
	id       string
	streamID string
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecCapability
	sender   *webrtc.RTPSender

	target   atomic.Pointer[layer] // layer the subscriber should get
	prefRank atomic.Int32          // the subscriber's per-track layer cap, rank+1; 0 = none
	paused   atomic.Bool           // the subscriber paused this track (off-screen tile)

	mu        sync.Mutex
	bound     bool
	ssrc      uint32
	pt        uint8
	writer    webrtc.TrackLocalWriter
	cur       *layer
	seqOffset uint16
	tsOffset  uint32
	started   bool
	flowing   bool // a write has gone out on the current binding
	lastSeq   uint16
	lastTS    uint32
	lastTime  int64
	hdr       rtp.Header  // scratch header for writes (no per-packet allocation)
	hist      []histEntry // len is a power of two
	packets   uint64
	bytes     uint64
	drops     uint64
	closed    bool
}

var _ webrtc.TrackLocal = (*downTrack)(nil)

func newDownTrack(p *Participant, up *upTrack) *downTrack {
	d := &downTrack{
		p:        p,
		id:       up.trackID,
		streamID: up.streamID,
		kind:     up.kind,
		codec:    up.codec.RTPCodecCapability,
	}
	if up.isVideo() {
		d.hist = make([]histEntry, histVideo)
	} else {
		d.hist = make([]histEntry, histAudio)
	}
	d.up.Store(up)
	return d
}

// Bind implements webrtc.TrackLocal: it picks the subscriber's payload type
// for the publisher's codec.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	var match *webrtc.RTPCodecParameters
	for _, c := range ctx.CodecParameters() {
		if !sameCodec(d.codec, c.RTPCodecCapability) {
			continue
		}
		if match == nil || (codecKindOf(d.codec.MimeType) == codecH264 && h264ProfileMatch(d.codec, c.RTPCodecCapability)) {
			cc := c
			match = &cc
		}
	}
	if match == nil {
		return webrtc.RTPCodecParameters{}, fmt.Errorf("%w: subscriber has no %s", webrtc.ErrUnsupportedCodec, d.codec.MimeType)
	}
	d.mu.Lock()
	d.bound = true
	d.ssrc = uint32(ctx.SSRC())
	d.pt = uint8(match.PayloadType)
	d.writer = ctx.WriteStream()
	d.cur = nil // wait for a keyframe on the (new) binding
	d.flowing = false
	d.mu.Unlock()
	d.retarget()
	return *match, nil
}

// Unbind implements webrtc.TrackLocal.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.mu.Lock()
	d.bound = false
	d.writer = nil
	d.mu.Unlock()
	return nil
}

func (d *downTrack) ID() string                { return d.id }
func (d *downTrack) RID() string               { return "" }
func (d *downTrack) StreamID() string          { return d.streamID }
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.kind }

// writeRTP forwards one cached packet from layer l. Called only by l's reader.
func (d *downTrack) writeRTP(l *layer, s *slot, now int64) {
	d.mu.Lock()
	if !d.bound || d.closed {
		d.mu.Unlock()
		return
	}
	if l != d.cur {
		t := d.target.Load()
		if l != t {
			d.mu.Unlock()
			return
		}
		if l.up.isVideo() && !s.keyframe {
			if d.started || !d.replayKeyframe(l, s, now) {
				d.mu.Unlock()
				l.requestKeyframe()
				return
			}
		} else {
			d.switchTo(l, s, now)
		}
	}
	outSeq := s.hdr.SequenceNumber + d.seqOffset
	outTS := s.hdr.Timestamp + d.tsOffset
	if int16(outSeq-d.lastSeq) > 0 {
		d.lastSeq, d.lastTS, d.lastTime = outSeq, outTS, now
	}
	d.hist[int(outSeq)&(len(d.hist)-1)] = histEntry{layer: l, out: outSeq, in: s.hdr.SequenceNumber, ts: outTS}
	if !d.send(s, outSeq, outTS) && !d.flowing {
		// The transport is not up yet (pion drops the packet silently):
		// start again from the next keyframe.
		d.cur, d.started = nil, false
	}
	d.mu.Unlock()
}

// send writes s with the given rewritten numbers and reports whether it
// went out; d.mu is held.
func (d *downTrack) send(s *slot, seq uint16, ts uint32) bool {
	h := &d.hdr
	h.Version = 2
	h.Padding = s.hdr.Padding
	h.PaddingSize = s.padLen
	h.Marker = s.hdr.Marker
	h.PayloadType = d.pt
	h.SequenceNumber = seq
	h.Timestamp = ts
	h.SSRC = d.ssrc
	h.CSRC = h.CSRC[:0]
	h.Extension = false
	h.Extensions = h.Extensions[:0]
	payload := s.payload()
	n, err := d.writer.WriteRTP(h, payload)
	if err != nil {
		d.drops++
		return false
	}
	if n == 0 {
		return false
	}
	d.flowing = true
	d.packets++
	d.bytes += uint64(s.n)
	return true
}

// switchTo makes l the current layer, starting at keyframe s, continuing the
// subscriber's sequence and timestamp spaces.
func (d *downTrack) switchTo(l *layer, s *slot, now int64) {
	if !d.started {
		d.seqOffset, d.tsOffset = 0, 0
		d.lastSeq = s.hdr.SequenceNumber - 1
		d.started = true
	} else {
		clock := uint64(l.up.codec.ClockRate)
		if clock == 0 {
			clock = 90000
		}
		gap := uint32(uint64(max(now-d.lastTime, 0)) * clock / uint64(time.Second))
		if gap == 0 {
			gap = 1
		}
		d.seqOffset = d.lastSeq + 1 - s.hdr.SequenceNumber
		d.tsOffset = d.lastTS + gap - s.hdr.Timestamp
	}
	d.cur = l
}

// maxReplay bounds the burst a new subscriber gets from the cache.
const maxReplay = 160

// replayKeyframe starts a new subscriber on layer l from the cached last
// keyframe instead of waiting for the publisher's next one: it sends the
// cached packets from the keyframe start up to (not including) s. It runs
// on l's reader goroutine with d.mu held, and reports whether the
// subscriber is now on l.
func (d *downTrack) replayKeyframe(l *layer, s *slot, now int64) bool {
	k := l.keySeq.Load()
	if k < 0 {
		return false
	}
	first := uint16(k)
	if n := s.hdr.SequenceNumber - first; n == 0 || n > maxReplay {
		return false
	}
	ks := l.cache.peek(first)
	if ks == nil || !ks.keyframe {
		return false
	}
	d.switchTo(l, ks, now)
	for q := first; q != s.hdr.SequenceNumber; q++ {
		ps := l.cache.peek(q)
		if ps == nil {
			continue // lost upstream; the subscriber will NACK it
		}
		out, ts := q+d.seqOffset, ps.hdr.Timestamp+d.tsOffset
		d.hist[int(out)&(len(d.hist)-1)] = histEntry{layer: l, out: out, in: q, ts: ts}
		if !d.send(ps, out, ts) && q == first {
			d.cur, d.started = nil, false // transport not up yet
			return false
		}
		d.lastSeq, d.lastTS, d.lastTime = out, ts, now
	}
	return true
}

// retransmit answers a NACK for the sequence number the subscriber saw.
func (d *downTrack) retransmit(seq uint16) bool {
	d.mu.Lock()
	e := d.hist[int(seq)&(len(d.hist)-1)]
	d.mu.Unlock()
	if e.layer == nil || e.out != seq {
		return false
	}
	return e.layer.cache.with(e.in, func(s *slot) {
		d.mu.Lock()
		if d.bound && !d.closed {
			d.send(s, e.out, e.ts)
		}
		d.mu.Unlock()
	})
}

// retarget recomputes the layer this subscriber should receive, from its
// preferred maximum layer and bandwidth estimate, and asks for a keyframe
// when that means a switch.
func (d *downTrack) retarget() {
	up := d.up.Load()
	if up == nil {
		return
	}
	if d.paused.Load() {
		d.target.Store(nil)
		d.mu.Lock()
		d.cur = nil // resume later from a keyframe
		d.mu.Unlock()
		return
	}
	layers := *up.layersPtr.Load()
	var t *layer
	if len(layers) > 0 {
		maxRank := int(d.p.maxLayer.Load())
		if pr := int(d.prefRank.Load()) - 1; pr >= 0 && pr < maxRank {
			maxRank = pr
		}
		budget := d.p.estimate.Load()
		now := up.now()
		t = layers[0]
		for _, l := range layers[1:] {
			if l.rank > maxRank {
				break
			}
			if budget != 0 && l.bitrate.Load() > budget {
				break
			}
			if now-l.lastAt.Load() > int64(layerIdle) {
				// Paused by the publisher (a browser drops upper layers
				// when its bandwidth estimate or CPU falls): its keyframe
				// would never come.
				continue
			}
			t = l
		}
	}
	old := d.target.Swap(t)
	d.mu.Lock()
	cur := d.cur
	d.mu.Unlock()
	if t != nil && (t != old || t != cur) && t != cur {
		t.requestKeyframe()
	}
}

// readRTCP handles the subscriber's feedback: NACKs are answered from the
// cache, PLI/FIR are forwarded (rate-limited) to the publisher, REMB lowers
// the estimate. It ends when the sender is stopped.
func (d *downTrack) readRTCP() {
	buf := make([]byte, 1500)
	for {
		n, _, err := d.sender.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				d.p.log.Debug("rtcp reader ended", "track", d.id, "err", err)
			}
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, pkt := range pkts {
			d.handleRTCP(pkt)
		}
	}
}

func (d *downTrack) handleRTCP(pkt rtcp.Packet) {
	c := &d.p.room.sfu.counters
	switch p := pkt.(type) {
	case *rtcp.TransportLayerNack:
		for _, pair := range p.Nacks {
			for _, seq := range pair.PacketList() {
				if d.retransmit(seq) {
					c.nacks.Add(1)
				} else {
					c.nackMisses.Add(1)
				}
			}
		}
	case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
		d.mu.Lock()
		cur := d.cur
		d.mu.Unlock()
		if cur == nil {
			cur = d.target.Load()
		}
		if cur != nil {
			cur.requestKeyframe()
		}
	case *rtcp.ReceiverEstimatedMaximumBitrate:
		d.p.setEstimateFromREMB(uint64(p.Bitrate))
	case *rtcp.ReceiverReport:
		for _, r := range p.Reports {
			d.p.noteLoss(r.FractionLost)
		}
	}
}

// close detaches the down-track; its counters go to the SFU totals.
func (d *downTrack) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	pk, by, dr := d.packets, d.bytes, d.drops
	d.mu.Unlock()
	c := &d.p.room.sfu.counters
	c.packets.Add(pk)
	c.bytes.Add(by)
	c.dropped.Add(dr)
	if up := d.up.Load(); up != nil {
		up.removeSub(d)
	}
}

// counts returns the live counters of an open down-track.
func (d *downTrack) counts() (packets, bytes, drops uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, 0, 0
	}
	return d.packets, d.bytes, d.drops
}
