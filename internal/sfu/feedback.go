// Feedback to publishers: how much the SFU wants them to send.
//
// A publisher's browser runs its own send-side bandwidth estimate from the
// TWCC feedback pion's twcc.SenderInterceptor sends it (every 100 ms; see
// registerInterceptors). That estimate follows the publisher's uplink
// only. Once a second the SFU also sends each video publisher a REMB: a
// browser takes the lesser of its estimate and the REMB, so the REMB is a
// ceiling saying what the SFU can use. It is the publisher ceiling
// (Config.MaxPublishBitrate), the same for every simulcast track: the SFU
// picks each subscriber's layer, and a publisher held below its upper
// layers would leave subscribers nothing to climb back to (tried: in the
// browser test a viewer's estimate, capped at 1.5 times what it got, and
// the publisher's REMB held each other down for 18 s). A single-layer
// track whose subscribers are all constrained (a bandwidth estimate, an
// explicit cap) asks for what the best placed of them can take, never
// less than minPublishBitrate: the publisher saves the uplink nobody could
// receive, and the subscribers' probes raise it again.
package sfu

import (
	"context"
	"time"

	"github.com/pion/rtcp"
)

const (
	rembInterval = time.Second
	// DefaultMaxPublishBitrate is Config.MaxPublishBitrate's default: a
	// 720p camera in three simulcast layers, or a 1080p screen.
	DefaultMaxPublishBitrate = 3_000_000
	// minPublishBitrate keeps a constrained publisher's lowest layers and
	// audio going.
	minPublishBitrate = 150_000
)

// feedbackLoop sends the publishers' REMBs until ctx ends.
func (s *SFU) feedbackLoop(ctx context.Context) {
	every(ctx, rembInterval, func() {
		for _, ns := range []Namespace{Calls, Streams, Shows} {
			for _, r := range s.Rooms(ns) {
				for _, p := range r.Participants() {
					p.sendREMB(s.maxPublishBitrate())
				}
			}
		}
	})
}

func (s *SFU) maxPublishBitrate() uint64 {
	if s.cfg.MaxPublishBitrate > 0 {
		return s.cfg.MaxPublishBitrate
	}
	return DefaultMaxPublishBitrate
}

// publishBudget is the REMB for p's video tracks, and their SSRCs.
func (p *Participant) publishBudget(ceiling uint64) (bps uint64, ssrcs []uint32) {
	p.mu.Lock()
	ups := make([]*upTrack, 0, len(p.ups))
	for _, u := range p.ups {
		if u.isVideo() {
			ups = append(ups, u)
		}
	}
	p.mu.Unlock()
	for _, u := range ups {
		layers := *u.layersPtr.Load()
		for _, l := range layers {
			ssrcs = append(ssrcs, l.ssrc)
		}
		subs := u.subs.load()
		need := uint64(0)
		if len(subs) == 0 || len(layers) > 1 {
			need = ceiling
		}
		for _, d := range subs {
			e := d.prefs.estimate.Load()
			if e == 0 {
				e = ceiling
			}
			need = max(need, e)
		}
		bps += need
	}
	return min(max(bps, minPublishBitrate), ceiling), ssrcs
}

// sendREMB tells a video publisher how much it should send at most.
func (p *Participant) sendREMB(ceiling uint64) {
	bps, ssrcs := p.publishBudget(ceiling)
	if len(ssrcs) == 0 {
		return
	}
	p.remb.Store(bps)
	if err := p.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(bps), SSRCs: ssrcs}}); err != nil {
		p.log.Debug("remb", "err", err)
	}
}
