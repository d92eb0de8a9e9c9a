// Send-side bandwidth estimation for subscribers, from their TWCC feedback.
//
// The writer numbers every packet it sends on a subscriber's transport
// (transport-cc) and remembers when it sent it and how big it was
// (sentLog). The subscriber's TWCC feedback says which arrived and when.
// Over windows of about a quarter second, bwe turns that into three
// figures: the fraction lost, the rate delivered, and whether the
// delivery spread out more than the sending (a queue building up on the
// path: the link is full before it drops; it only stops the estimate
// from growing: lowering on delay alone took a loaded host's receive
// jitter for congestion in the browser tests). A window holds at least 50
// packets and the loss is smoothed over windows (a quarter of each new
// one), so that random loss, say 5 % on a radio link, which NACKs repair,
// is not taken for congestion: over ten minutes of it the smoothed figure
// stays well under 10 % (TestBWELossLowersCleanRaisesThroughProbes). Its
// rules, after GCC's loss controller with a crude delay signal:
//
//   - loss over 10 %: the estimate falls to what was delivered, less half
//     the loss (20 % lost: 90 % of it). Once lowered, it holds for
//     congestionHold, the time a layer switch (a keyframe) takes to
//     relieve the link;
//   - loss under 2 % and no queueing: it grows by 8 % a second, but no
//     further than 1.5 times what was delivered, since nothing proves
//     more would pass;
//   - in between: it holds.
//
// The estimate starts unconstrained (0) and becomes a number on the first
// congestion. Forwarding alone never proves a link can carry the next
// simulcast layer, so a constrained subscriber whose link has been clean
// for probeQuiet is probed: for probeLength the writer adds padding (on
// the RTX stream, which receivers discard) at the estimate's rate, and if
// that arrives cleanly the estimate rises to 90 % of what was delivered.
// Once the estimate exceeds what every layer the subscriber could take
// needs, it is unconstrained again and probing stops.
package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

const (
	bweWindow      = 250 * time.Millisecond // send time a window of feedback covers
	bweMinPackets  = 50
	bweMinEstimate = 100_000
	congestionHold = 500 * time.Millisecond
	probeQuiet     = 2 * time.Second // clean link before a probe
	probeEvery     = 2 * time.Second
	probeLength    = time.Second
	padInterval    = 20 * time.Millisecond // the writer's padding tick while probing
	padSize        = 255                   // padding bytes per probe packet
)

// sentLog remembers the packets a writer sent, by transport-wide sequence
// number: (µs since the writer's epoch) << 32 | seq << 16 | size. Written
// by the writer, read by the RTCP reader that handles the feedback.
type sentLog struct {
	epoch time.Time
	ring  [1024]atomic.Uint64
}

func (l *sentLog) record(seq uint16, size int, now time.Time) {
	us := uint64(now.Sub(l.epoch) / time.Microsecond)
	l.ring[int(seq)&(len(l.ring)-1)].Store(us<<32 | uint64(seq)<<16 | uint64(min(size, 0xffff)))
}

// lookup returns when packet seq was sent (µs since epoch) and its size.
func (l *sentLog) lookup(seq uint16) (us int64, size int, ok bool) {
	v := l.ring[int(seq)&(len(l.ring)-1)].Load()
	if v == 0 || uint16(v>>16) != seq {
		return 0, 0, false
	}
	return int64(v >> 32), int(v & 0xffff), true
}

// bweWindowStats is one window of feedback.
type bweWindowStats struct {
	packets, lost       int
	bytes               int   // received
	firstSent, lastSent int64 // µs
	firstArr, lastArr   int64 // µs, feedback clock
}

func (w *bweWindowStats) add(sentUs int64, size int, received bool, arrUs int64) {
	if w.packets == 0 {
		w.firstSent, w.lastSent = sentUs, sentUs
	}
	w.packets++
	w.firstSent, w.lastSent = min(w.firstSent, sentUs), max(w.lastSent, sentUs)
	if !received {
		w.lost++
		return
	}
	if w.bytes == 0 {
		w.firstArr, w.lastArr = arrUs, arrUs
	}
	w.bytes += size
	w.firstArr, w.lastArr = min(w.firstArr, arrUs), max(w.lastArr, arrUs)
}

// summary returns the window's loss fraction, delivered rate (bit/s) and
// whether delivery spread out over sending (queueing).
func (w *bweWindowStats) summary() (loss float64, delivered uint64, queueing bool) {
	loss = float64(w.lost) / float64(w.packets)
	sendSpan, arrSpan := w.lastSent-w.firstSent, w.lastArr-w.firstArr
	if arrSpan > 0 {
		delivered = uint64(w.bytes) * 8 * 1e6 / uint64(arrSpan)
	}
	queueing = arrSpan-sendSpan > 30_000+sendSpan/10
	return loss, delivered, queueing
}

// bwe is one subscriber transport's estimate.
type bwe struct {
	mu          sync.Mutex
	win         bweWindowStats
	est         uint64 // bit/s; 0 = unconstrained
	updated     time.Time
	lastCongest time.Time
	lastUnclean time.Time // last window with loss ≥ 2 % or queueing: no probe for probeQuiet after it
	lastProbe   time.Time
	probeUntil  time.Time
	loss        float64 // smoothed loss fraction
}

// onFeedback adds a TWCC feedback packet; when a window is complete it
// updates the estimate and reports it (changed) with the padding rate the
// writer should probe at.
//
// rrLoss says whether the subscriber's receiver reports said lately that
// it lost packets. Without that, loss in the transport-wide feedback is
// not taken for congestion: Chromium
// sometimes reports most of a viewer's packets missing from its TWCC
// feedback while its receiver reports, and its decoder, show none lost
// (TestGroupSimulcast pinned to the lowest layer in 1 run of 4: 60-87 %
// "lost" in every window for 20 s, 0 in the receiver reports). Real
// congestion loses packets the receiver reports count too.
func (b *bwe) onFeedback(fb *rtcp.TransportLayerCC, sent *sentLog, now time.Time, ceiling uint64, rrLoss bool) (est, probe uint64, changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	seq, arr, di := fb.BaseSequenceNumber, int64(fb.ReferenceTime)*64_000, 0
	left := int(fb.PacketStatusCount)
	status := func(sym uint16) {
		if left == 0 {
			return
		}
		left--
		received := sym == rtcp.TypeTCCPacketReceivedSmallDelta || sym == rtcp.TypeTCCPacketReceivedLargeDelta
		if received && di < len(fb.RecvDeltas) {
			arr += fb.RecvDeltas[di].Delta
			di++
		}
		if us, size, ok := sent.lookup(seq); ok {
			b.win.add(us, size, received, arr)
		}
		seq++
	}
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range c.RunLength {
				status(c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, s := range c.SymbolList {
				status(s)
			}
		}
	}
	if b.win.packets < bweMinPackets || b.win.lastSent-b.win.firstSent < int64(bweWindow/time.Microsecond) {
		return b.est, b.probeRate(now), false
	}
	loss, delivered, queueing := b.win.summary()
	if !rrLoss {
		loss = 0
	}
	b.win = bweWindowStats{}
	old := b.est
	b.update(now, loss, delivered, queueing, ceiling)
	return b.est, b.probeRate(now), b.est != old
}

// update applies one window's figures (see the file comment).
func (b *bwe) update(now time.Time, loss float64, delivered uint64, queueing bool, ceiling uint64) {
	dt := min(now.Sub(b.updated), time.Second)
	if b.updated.IsZero() {
		b.loss = loss
	} else {
		b.loss += (loss - b.loss) / 4
	}
	loss = b.loss
	b.updated = now
	if loss >= 0.02 || queueing {
		// Not clean: padding now would only add to what the link loses
		// (on a lossy, capped link the probes' extra rate made viewers'
		// video stall for seconds), and stops a probe under way.
		b.lastUnclean, b.probeUntil = now, time.Time{}
	}
	switch {
	case loss > 0.10:
		b.probeUntil = time.Time{}
		if b.est != 0 && now.Sub(b.lastCongest) < congestionHold {
			break
		}
		base := float64(delivered)
		if b.est != 0 && float64(b.est) < base {
			base = float64(b.est)
		}
		base *= 1 - loss/2
		b.est = max(uint64(base), bweMinEstimate)
		b.lastCongest = now
	case loss < 0.02 && !queueing && b.est != 0:
		grown := b.est + uint64(float64(b.est)*0.08*dt.Seconds())
		grown = min(grown, max(b.est, delivered*3/2))
		if now.Before(b.probeUntil) {
			grown = max(grown, delivered*9/10)
		}
		b.est = grown
		if ceiling != 0 && b.est >= ceiling {
			b.est = 0 // enough for everything: unconstrained again
		}
	}
	if b.est != 0 && now.Sub(b.lastCongest) >= probeQuiet && now.Sub(b.lastUnclean) >= probeQuiet && now.Sub(b.lastProbe) >= probeEvery {
		b.lastProbe, b.probeUntil = now, now.Add(probeLength)
	}
}

// probeRate is the padding rate wanted now (bit/s).
func (b *bwe) probeRate(now time.Time) uint64 {
	if b.est == 0 || !now.Before(b.probeUntil) {
		return 0
	}
	return b.est
}

// onTWCC feeds a TWCC feedback packet from the subscriber to its estimate,
// and the estimate to its layer choice and the writer's probing.
func (p *Participant) onTWCC(fb *rtcp.TransportLayerCC) {
	sent := p.writer.sent
	if sent == nil {
		return
	}
	downs := p.downTracks()
	ceiling, videos := uint64(0), uint64(0)
	for _, d := range downs {
		up := d.up.Load()
		if up == nil {
			continue
		}
		if !up.isVideo() {
			ceiling += 64_000
			continue
		}
		videos++
		if ls := *up.layersPtr.Load(); len(ls) > 0 {
			ceiling += ls[len(ls)-1].bitrate.Load() * 5 / 4
		}
	}
	rrLoss := time.Since(time.Unix(0, p.prefs.lastLoss.Load())) <= lossWindow
	est, probe, changed := p.bwe.onFeedback(fb, sent, time.Now(), ceiling, rrLoss)
	p.writer.setProbe(probe)
	if !changed {
		return
	}
	p.bweEstimate.Store(est)
	p.log.Debug("bandwidth estimate", "bps", est, "probe_bps", probe)
	if videos > 0 {
		est /= videos // the layer choice budgets each video track
	}
	if p.prefs.twccLimit.Swap(est) != est {
		p.updateEstimate()
	}
}
