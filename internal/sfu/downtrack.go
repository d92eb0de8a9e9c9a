package sfu

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// How many recently sent packets a down-track remembers for mapping NACKed
// (rewritten) sequence numbers back to cached packets (powers of two).
const (
	histVideo = 512 // ~4 s at 1 Mbit/s
	histAudio = 64  // ~1.3 s of 20 ms frames
)

type histEntry struct {
	layer  *layer
	out    uint16 // sequence number as sent
	in     uint16 // sequence number in the layer's cache
	ts     uint32 // timestamp as sent
	resent int64  // when last retransmitted (the track's clock), 0 = never
}

// resendGap is the least time between two retransmissions of one packet:
// a NACK repeated sooner was sent before the first retransmission could
// arrive, and answering it would only add to a congested link.
const resendGap = 100 * time.Millisecond

// prefs are what a subscriber may receive: shared by all down-tracks of one
// participant, or owned by one stand-alone sink.
type prefs struct {
	maxLayer      atomic.Int32
	explicitLimit atomic.Uint64 // SetMaxBitrate, bps; 0 = none
	rembLimit     atomic.Uint64 // last REMB from the subscriber, bps; 0 = none
	twccLimit     atomic.Uint64 // per video track, from the TWCC estimate (bwe.go), bps; 0 = none
	lastLoss      atomic.Int64  // unix nanos of the last receiver report with loss
	estimate      atomic.Uint64 // effective budget, bps; 0 = unlimited
}

// downTrack is one subscription: a sink of one published track. It has its
// own bounded queue (see queue.go), drained by its subscriber's writer
// goroutine (writer.go), so a slow subscriber never delays the publisher's
// reader or another subscriber.
//
// The writer rewrites SSRC, payload type, sequence numbers and timestamps,
// so that simulcast layer switches, drops and publisher restarts look like
// one continuous stream to the subscriber. For a WebRTC subscriber it is a
// webrtc.TrackLocal bound to the subscriber's PeerConnection; other sinks
// get a writer at once (Room.Subscribe).
type downTrack struct {
	room     *Room
	p        *Participant // nil for a stand-alone sink
	prefs    *prefs
	log      *slog.Logger
	up       atomic.Pointer[upTrack]
	id       string
	streamID string
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecCapability
	sender   *webrtc.RTPSender
	onEnded  func(d *downTrack, u *upTrack) // the source ended

	target   atomic.Pointer[layer] // layer the subscriber should get
	cur      atomic.Pointer[layer] // layer the writer is on (nil: waiting for a keyframe)
	prefRank atomic.Int32          // the subscriber's per-track layer cap, rank+1; 0 = none
	sticky   bool                  // keep the current layer while it runs (SinkOptions.Sticky)
	paused   atomic.Bool           // the subscriber paused this track (off-screen tile)
	closed   atomic.Bool
	retired  bool // counted in the SFU totals (under counters.statsMu)

	q         queue
	w         *writer // drains q
	ownWriter bool    // w serves this down-track alone (a stand-alone sink)

	packets atomic.Uint64 // written
	bytes   atomic.Uint64
	errors  atomic.Uint64 // writes that failed
	drops   atomic.Uint64 // packets dropped because the writer fell behind

	// where packets go: set by Bind/Unbind, loaded by the writer for each
	// packet, so that unbinding never waits for a write in progress
	binding atomic.Pointer[binding]

	// owned by the writer goroutine
	boundTo   *binding // the binding flowing refers to
	seqOffset uint16
	tsOffset  uint32
	started   bool
	flowing   bool // a write has gone out on the current binding
	lastSeq   uint16
	lastTS    uint32
	lastTime  int64
	// A run of padding-only packets dropped (skipPadding): packets older
	// than padStart arriving late keep the offset they had before it.
	padRun    bool
	padStart  uint16
	padEnd    uint16
	padOffset uint16
	// The newest packet of the layer being switched to that was dropped
	// while waiting for its keyframe (skipLayer nil: none): see sendSkipped.
	skipLayer *layer
	skipMax   uint16
	rtxSeq    uint16      // sequence numbers of the RTX stream
	hdr       rtp.Header  // scratch header for writes (no per-packet allocation)
	ext       [6]byte     // scratch header-extension payloads
	pkt       pktCopy     // the packet being forwarded, copied out of the cache
	aux       pktCopy     // a replayed or retransmitted packet
	hist      []histEntry // len is a power of two
}

var _ webrtc.TrackLocal = (*downTrack)(nil)

// binding is where a down-track writes: the subscriber's SSRC and payload
// type, and the sink (pion's SRTP write stream for a WebRTC subscriber, or
// a Sink given to Room.Subscribe).
type binding struct {
	ssrc uint32
	pt   uint8
	w    Sink
	// RTX (RFC 4588) when the subscriber negotiated it for the codec:
	// retransmissions go on their own SSRC and payload type.
	rtxSSRC uint32
	rtxPT   uint8
	// The subscriber's header-extension IDs (0: not negotiated). The
	// publisher's extensions are never copied: each is written anew.
	levelID, absID, twccID uint8
	// red: the subscriber takes RED (red.go), with innerPT its number
	// for the Opus inside; otherwise a RED track reaches it as Opus.
	red     bool
	innerPT uint8
}

// newDownTrack makes a subscription of up drained by w (nil: a writer of
// its own, ended by close).
func newDownTrack(r *Room, up *upTrack, pr *prefs, log *slog.Logger, w *writer) *downTrack {
	d := &downTrack{
		room:     r,
		prefs:    pr,
		log:      log,
		id:       up.trackID,
		streamID: up.streamID,
		kind:     up.kind,
		codec:    up.codec.RTPCodecCapability,
	}
	if w == nil {
		w, d.ownWriter = newWriter(), true
	}
	d.w = w
	if up.isVideo() {
		d.hist = make([]histEntry, histVideo)
		d.q.init(queueVideo, w.wake)
	} else {
		d.hist = make([]histEntry, histAudio)
		d.q.init(queueAudio, w.wake)
	}
	d.up.Store(up)
	w.sinks.add(d)
	return d
}

// Bind implements webrtc.TrackLocal: it picks the subscriber's payload type
// for the publisher's codec.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	match := bestCodec(d.codec, ctx.CodecParameters())
	if match == nil {
		return webrtc.RTPCodecParameters{}, fmt.Errorf("%w: subscriber has no %s", webrtc.ErrUnsupportedCodec, d.codec.MimeType)
	}
	b := &binding{ssrc: uint32(ctx.SSRC()), pt: uint8(match.PayloadType), w: ctx.WriteStream()}
	if isRED(match.MimeType) {
		b.red, b.innerPT = true, redInnerPT(match.SDPFmtpLine)
	}
	if rtx := ctx.SSRCRetransmission(); rtx != 0 {
		apt := fmt.Sprintf("apt=%d", match.PayloadType)
		for _, c := range ctx.CodecParameters() {
			if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) && c.SDPFmtpLine == apt {
				b.rtxSSRC, b.rtxPT = uint32(rtx), uint8(c.PayloadType)
			}
		}
	}
	for _, e := range ctx.HeaderExtensions() {
		if e.ID < 1 || e.ID > 14 {
			continue // the writer uses the one-byte form only
		}
		switch e.URI {
		case audioLevelURI:
			b.levelID = uint8(e.ID)
		case absSendTimeURI:
			b.absID = uint8(e.ID)
		case sdp.TransportCCURI:
			// Video only: Chromium did not record audio packets'
			// numbers (each looked lost in its feedback: ~30 % "loss"
			// on loopback, TestGroupSimulcast stuck on the low layer).
			if d.kind == webrtc.RTPCodecTypeVideo {
				b.twccID = uint8(e.ID)
			}
		}
	}
	d.setBinding(b)
	return *match, nil
}

// bind points the down-track at a sink that takes plain RTP (no RTX, no
// header extensions; RED as such when red, with Opus as innerPT); it
// starts again from a keyframe.
func (d *downTrack) bind(ssrc uint32, pt uint8, w Sink, red bool, innerPT uint8) {
	d.setBinding(&binding{ssrc: ssrc, pt: pt, w: w, red: red, innerPT: innerPT})
}

func (d *downTrack) setBinding(b *binding) {
	d.binding.Store(b)
	d.q.requestResync()
	d.retarget()
}

// Unbind implements webrtc.TrackLocal.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.binding.Store(nil)
	return nil
}

func (d *downTrack) ID() string                { return d.id }
func (d *downTrack) RID() string               { return "" }
func (d *downTrack) StreamID() string          { return d.streamID }
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.kind }

// enqueue hands one cached packet of layer l to the writer. It runs on l's
// reader goroutine, never blocks and never allocates; packets of layers the
// subscriber is not on and not switching to are skipped here.
func (d *downTrack) enqueue(l *layer, s *slot, now int64) {
	if l != d.cur.Load() && l != d.target.Load() {
		return
	}
	if dropped := d.q.push(qentry{l: l, s: s, gen: s.gen.Load(), now: now}, l.up.isVideo()); dropped > 0 {
		d.drops.Add(uint64(dropped))
		if l.up.isVideo() {
			l.requestKeyframe()
		}
	}
}

// drain runs on the down-track's writer (the only goroutine that writes
// to the subscriber): it takes one batch off the queue, answers the NACKs
// queued with it and forwards the packets. It reports whether there was
// anything to do.
func (d *downTrack) drain(batch []qentry, nacks []uint16) bool {
	if d.closed.Load() || d.q.idle() {
		return false
	}
	n, nn, resync := d.q.pop(batch, nacks)
	if n == 0 && nn == 0 && !resync {
		return false
	}
	d.w.now = time.Now() // one clock read per batch (abs-send-time, sentLog)
	if resync {
		d.cur.Store(nil) // start again from a keyframe
	}
	for _, seq := range nacks[:nn] {
		d.retransmit(seq)
	}
	for i := range n {
		if d.q.resyncPending() {
			break // dropped meanwhile: the rest of the batch is stale
		}
		d.forward(&batch[i])
	}
	return true
}

// forward writes one queued packet.
func (d *downTrack) forward(e *qentry) {
	l := e.l
	if d.binding.Load() == nil || d.closed.Load() || !d.pkt.copyFrom(e.s, e.gen) {
		return // unbound, or the cache slot was reused before we got to it
	}
	pk := &d.pkt
	pk.red = l.up.isRED(pk.pt)
	skipped := uint16(0)
	if l != d.cur.Load() {
		if l != d.target.Load() {
			return
		}
		if l.up.isVideo() && !pk.keyframe {
			if d.started || !d.replayKeyframe(l, pk, e.now) {
				d.noteSkipped(l, pk.seq)
				l.requestKeyframe()
				return
			}
		} else {
			d.switchTo(l, pk.seq, pk.ts, e.now)
			skipped = d.skippedAfter(l, pk.seq)
		}
	}
	if pk.n == 0 {
		d.skipPadding(pk.seq)
		return
	}
	outSeq := d.outSeq(pk.seq)
	outTS := pk.ts + d.tsOffset
	if int16(outSeq-d.lastSeq) > 0 {
		d.lastSeq, d.lastTS, d.lastTime = outSeq, outTS, e.now
	}
	d.hist[int(outSeq)&(len(d.hist)-1)] = histEntry{layer: l, out: outSeq, in: pk.seq, ts: outTS}
	if !d.send(pk, outSeq, outTS) && !d.flowing {
		// The transport is not up yet (pion drops the packet silently):
		// start again from the next keyframe.
		d.cur.Store(nil)
		d.started = false
		return
	}
	if skipped > 0 { // a keyframe's first packet came after the rest of it
		d.sendSkipped(l, pk.seq, skipped, e.now)
	}
}

// noteSkipped remembers the newest packet of layer l dropped while the
// subscriber waits for l's keyframe.
func (d *downTrack) noteSkipped(l *layer, seq uint16) {
	if d.skipLayer != l || int16(seq-d.skipMax) > 0 {
		d.skipLayer, d.skipMax = l, seq
	}
}

// skippedAfter is how many sequence numbers of l after first (the
// keyframe the subscriber switches on) were dropped before it came, and
// forgets them. A keyframe's first packet can come after the rest of it:
// lost on the publisher's link and repaired (RTX) a round trip later.
func (d *downTrack) skippedAfter(l *layer, first uint16) uint16 {
	n := d.skipMax - first
	if d.skipLayer != l || int16(n) <= 0 || n > maxReplay {
		n = 0
	}
	d.skipLayer = nil
	return n
}

// sendSkipped sends, from l's cache, the n packets after first that the
// subscriber dropped while it waited for the keyframe at first: without
// them the keyframe could never be completed (a NACK is answered only for
// what was sent), and the picture stayed frozen until the next keyframe.
func (d *downTrack) sendSkipped(l *layer, first, n uint16, now int64) {
	rp := &d.aux
	for q := first + 1; q != first+1+n; q++ {
		if !l.cache.copyOut(q, rp) {
			continue // lost upstream too: repaired later, or NACKed
		}
		if rp.n == 0 {
			d.skipPadding(q)
			continue
		}
		out, ts := d.outSeq(q), rp.ts+d.tsOffset
		if int16(out-d.lastSeq) > 0 {
			d.lastSeq, d.lastTS, d.lastTime = out, ts, now
		}
		d.hist[int(out)&(len(d.hist)-1)] = histEntry{layer: l, out: out, in: q, ts: ts}
		d.send(rp, out, ts)
	}
}

// skipPadding drops a padding-only packet (a publisher's bandwidth probe:
// nothing to decode) without leaving a gap the subscriber would take for
// loss: the packets after it move down one sequence number. Late packets
// from before the run of padding keep their old numbers (outSeq).
func (d *downTrack) skipPadding(seq uint16) {
	d.room.sfu.counters.padDropped.Add(1)
	if int16(seq+d.seqOffset-d.lastSeq) <= 0 {
		return // late: its number was never used
	}
	if !d.padRun || seq != d.padEnd {
		d.padRun, d.padStart, d.padOffset = true, seq, d.seqOffset
	}
	d.padEnd = seq + 1
	d.seqOffset--
}

// outSeq maps a publisher's sequence number to the subscriber's.
func (d *downTrack) outSeq(seq uint16) uint16 {
	if d.padRun {
		switch diff := int16(seq - d.padStart); {
		case diff < 0:
			return seq + d.padOffset
		case diff > 1024:
			d.padRun = false // long past: nothing that late comes any more
		}
	}
	return seq + d.seqOffset
}

// send writes pk with the given rewritten numbers and reports whether it
// went out.
func (d *downTrack) send(pk *pktCopy, seq uint16, ts uint32) bool {
	return d.write(pk, seq, ts, false)
}

// write sends pk as the subscriber's packet seq (on the RTX stream when
// rtx: its own sequence number, seq in the payload) and reports whether it
// went out.
func (d *downTrack) write(pk *pktCopy, seq uint16, ts uint32, rtx bool) bool {
	b := d.binding.Load()
	if b == nil {
		return false
	}
	if b != d.boundTo {
		d.boundTo, d.flowing = b, false
	}
	h := &d.hdr
	h.Version = 2
	h.Padding = pk.padding
	h.PaddingSize = pk.padLen
	h.Marker = pk.marker
	h.Timestamp = ts
	h.CSRC = h.CSRC[:0]
	payload := pk.payload()
	if rtx {
		// pion hands RTX packets to the media stream's sender-report
		// interceptor too, which takes any number less than half a cycle
		// ahead of the last for media in order: keep the RTX numbers in
		// the other half.
		if diff := d.rtxSeq - d.lastSeq; diff < 1<<15 {
			d.rtxSeq = d.lastSeq + 1<<15
		}
		h.PayloadType, h.SequenceNumber, h.SSRC = b.rtxPT, d.rtxSeq, b.rtxSSRC
		d.rtxSeq++
		payload = nil // a probe: padding only
		if pk.n > 0 {
			payload = pk.rtxPayload(seq)
		}
	} else {
		h.PayloadType, h.SequenceNumber, h.SSRC = b.pt, seq, b.ssrc
		switch { // red.go
		case pk.red && b.red:
			redSetPT(payload, b.innerPT)
		case pk.red:
			var ok bool
			if payload, ok = redPrimary(payload); !ok {
				return false
			}
		case b.red && pk.n > 0: // plain Opus as RED: a one-byte block header before it
			pk.buf[rtxHeadroom-1] = b.innerPT & 0x7f
			payload = pk.buf[rtxHeadroom-1 : rtxHeadroom+pk.n]
		}
	}
	d.setExtensions(b, pk, len(payload))
	n, err := b.w.WriteRTP(h, payload)
	if err != nil || n == 0 {
		if b.twccID != 0 {
			d.w.transportSeq-- // not sent: the subscriber must not see a gap
		}
		if err != nil {
			d.errors.Add(1)
		}
		return false
	}
	d.flowing = true
	d.packets.Add(1)
	d.bytes.Add(uint64(pk.size))
	return true
}

// setExtensions writes the header extensions the subscriber negotiated:
// the publisher's audio level, the send time (abs-send-time) and the
// subscriber transport's own transport-wide sequence number (its TWCC
// feedback refers to those). Nothing else of the publisher's is kept.
func (d *downTrack) setExtensions(b *binding, pk *pktCopy, size int) {
	h := &d.hdr
	h.Extension = false
	h.Extensions = h.Extensions[:0]
	if b.levelID != 0 && pk.hasLevel {
		d.ext[0] = pk.level
		_ = h.SetExtension(b.levelID, d.ext[0:1])
	}
	if b.absID == 0 && b.twccID == 0 {
		return
	}
	now := d.w.now
	if b.absID != 0 {
		putAbsSendTime(d.ext[1:4], now)
		_ = h.SetExtension(b.absID, d.ext[1:4])
	}
	if b.twccID != 0 {
		seq := d.w.nextTransportSeq()
		d.ext[4], d.ext[5] = byte(seq>>8), byte(seq)
		if d.w.sent != nil {
			d.w.sent.record(seq, rtpOverhead+size+int(pk.padLen), now)
		}
		_ = h.SetExtension(b.twccID, d.ext[4:6])
	}
}

// putAbsSendTime writes t as abs-send-time: 24 bits of 6.18 fixed-point
// seconds (receivers only use differences, so the epoch is irrelevant).
func putAbsSendTime(dst []byte, t time.Time) {
	ns := uint64(t.UnixNano())
	v := (ns/uint64(time.Second)&63)<<18 | (ns%uint64(time.Second))<<18/uint64(time.Second)
	dst[0], dst[1], dst[2] = byte(v>>16), byte(v>>8), byte(v)
}

// rtpOverhead approximates what a packet costs on the wire beyond its
// payload and padding: RTP header, extensions, SRTP tag.
const rtpOverhead = 40

// sendPadding sends n padding-only packets on the RTX stream, a bandwidth
// probe that receivers discard, and reports whether it could (RTX
// negotiated, packets flowing).
func (d *downTrack) sendPadding(n int) bool {
	b := d.binding.Load()
	if b == nil || b.rtxSSRC == 0 || !d.flowing || d.closed.Load() {
		return false
	}
	pk := &d.aux
	pk.n, pk.size, pk.padding, pk.padLen, pk.marker, pk.hasLevel = 0, 0, true, padSize, false, false
	for range n {
		if !d.write(pk, d.lastSeq, d.lastTS, true) {
			return false
		}
	}
	d.room.sfu.counters.probes.Add(uint64(n))
	return true
}

// switchTo makes l the current layer, starting at the keyframe with these
// numbers, continuing the subscriber's sequence and timestamp spaces.
func (d *downTrack) switchTo(l *layer, seq uint16, ts uint32, now int64) {
	d.padRun = false
	if !d.started {
		d.seqOffset, d.tsOffset = 0, 0
		d.lastSeq = seq - 1
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
		d.seqOffset = d.lastSeq + 1 - seq
		d.tsOffset = d.lastTS + gap - ts
	}
	d.cur.Store(l)
}

// maxReplay bounds the burst a new subscriber gets from the cache.
const maxReplay = 160

// replayKeyframe starts a new subscriber on layer l from the cached last
// keyframe instead of waiting for the publisher's next one: it sends the
// cached packets from the keyframe start up to (not including) pk. It runs
// on the writer (d.pkt is pk: the replay copies into a second buffer), and
// reports whether the subscriber is now on l.
func (d *downTrack) replayKeyframe(l *layer, pk *pktCopy, now int64) bool {
	k := l.keySeq.Load()
	if k < 0 {
		return false
	}
	first, last := uint16(k), pk.seq
	if n := last - first; n == 0 || n > maxReplay {
		return false
	}
	rp := &d.aux
	if !l.cache.copyOut(first, rp) || !rp.keyframe {
		return false
	}
	d.switchTo(l, first, rp.ts, now)
	for q := first; q != last; q++ {
		if q != first && !l.cache.copyOut(q, rp) {
			continue // lost upstream; the subscriber will NACK it
		}
		if rp.n == 0 {
			d.skipPadding(q)
			continue
		}
		out, ts := d.outSeq(q), rp.ts+d.tsOffset
		d.hist[int(out)&(len(d.hist)-1)] = histEntry{layer: l, out: out, in: q, ts: ts}
		if !d.send(rp, out, ts) && q == first {
			d.cur.Store(nil) // transport not up yet
			d.started = false
			return false
		}
		d.lastSeq, d.lastTS, d.lastTime = out, ts, now
	}
	return true
}

// retransmit answers a NACK for the sequence number the subscriber saw:
// the packet is copied out of the cache under its lock and sent after, on
// the RTX stream when the subscriber negotiated RTX for the codec, else
// again as it was. It runs on the writer.
func (d *downTrack) retransmit(seq uint16) {
	c := &d.room.sfu.counters
	e := &d.hist[int(seq)&(len(d.hist)-1)]
	if e.layer == nil || e.out != seq {
		c.nackMisses.Add(1)
		return
	}
	now := e.layer.up.now()
	if e.resent != 0 && now-e.resent < int64(resendGap) {
		return
	}
	e.resent = now
	rp := &d.aux
	if !e.layer.cache.copyOut(e.in, rp) {
		c.nackMisses.Add(1)
		return
	}
	rp.red = e.layer.up.isRED(rp.pt)
	b := d.binding.Load()
	if b == nil {
		return
	}
	d.write(rp, e.out, e.ts, b.rtxSSRC != 0)
	c.nacks.Add(1)
	if b.rtxSSRC != 0 {
		c.nacksRTX.Add(1)
	}
}

// retarget recomputes the layer this subscriber should receive, from its
// preferred maximum layer and bandwidth estimate, and asks for a keyframe
// when that means a switch. It never waits for the writer.
func (d *downTrack) retarget() {
	up := d.up.Load()
	if up == nil {
		return
	}
	if d.paused.Load() {
		d.target.Store(nil)
		d.q.requestResync() // resume later from a keyframe
		return
	}
	layers := *up.layersPtr.Load()
	var t *layer
	if len(layers) > 0 {
		maxRank := int(d.prefs.maxLayer.Load())
		if pr := int(d.prefRank.Load()) - 1; pr >= 0 && pr < maxRank {
			maxRank = pr
		}
		budget := d.prefs.estimate.Load()
		now := up.now()
		if cur := d.cur.Load(); d.sticky && cur != nil && now-cur.lastAt.Load() <= int64(stickyIdle) && slices.Contains(layers, cur) {
			d.target.Store(cur)
			return
		}
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
	cur := d.cur.Load()
	if t != nil && (t != old || t != cur) && t != cur {
		t.requestKeyframe()
	}
}

// requestKeyframe asks the publisher of the layer the subscriber gets (or
// is switching to) for a keyframe, rate-limited per layer.
func (d *downTrack) requestKeyframe() {
	cur := d.cur.Load()
	if cur == nil {
		cur = d.target.Load()
	}
	if cur != nil {
		cur.requestKeyframe()
	}
}

// readRTCP handles the subscriber's feedback: NACKs go to the writer,
// PLI/FIR are forwarded (rate-limited) to the publisher, REMB lowers the
// estimate. It ends when the sender is stopped.
func (d *downTrack) readRTCP() {
	buf := make([]byte, 1500)
	for {
		n, _, err := d.sender.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				d.log.Debug("rtcp reader ended", "track", d.id, "err", err)
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
	switch p := pkt.(type) {
	case *rtcp.TransportLayerNack:
		for _, pair := range p.Nacks {
			for _, seq := range pair.PacketList() {
				if !d.q.pushNACK(seq) {
					d.room.sfu.counters.nackMisses.Add(1)
				}
			}
		}
	case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
		d.requestKeyframe()
	case *rtcp.TransportLayerCC:
		if d.p != nil {
			d.p.onTWCC(p)
		}
	case *rtcp.ReceiverEstimatedMaximumBitrate:
		if d.p != nil {
			d.p.setEstimateFromREMB(uint64(p.Bitrate))
		}
	case *rtcp.ReceiverReport:
		for _, r := range p.Reports {
			noteLoss(d.prefs, r.FractionLost)
		}
	}
}

// close detaches the down-track and ends its writer (after a write in
// progress, which closing the subscriber's connection ends); its counters
// go to the SFU totals.
func (d *downTrack) close() {
	if d.closed.Swap(true) {
		return
	}
	d.w.sinks.remove(d)
	if d.ownWriter {
		d.w.stop()
	}
	d.room.sfu.retireDownTrack(d)
	if up := d.up.Load(); up != nil {
		up.subs.remove(d)
	}
}

// SinkStats are one subscription's counters.
type SinkStats struct {
	Track   string `json:"track"`
	Packets uint64 `json:"packets"` // written
	Bytes   uint64 `json:"bytes"`
	Errors  uint64 `json:"errors"` // writes that failed
	Drops   uint64 `json:"drops"`  // dropped because the subscriber fell behind
}

func (d *downTrack) stats() SinkStats {
	st := SinkStats{Track: d.id, Packets: d.packets.Load(), Bytes: d.bytes.Load(), Errors: d.errors.Load(), Drops: d.drops.Load()}
	if up := d.up.Load(); up != nil {
		st.Track = up.id
	}
	return st
}

// liveStats returns the counters of an open down-track.
func (d *downTrack) liveStats() (SinkStats, bool) {
	if d.closed.Load() {
		return SinkStats{}, false
	}
	return d.stats(), true
}
