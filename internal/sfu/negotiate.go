// Negotiation: offers and answers in both directions, trickle ICE, ICE
// restarts and the server-offer loop.
package sfu

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// HandleOffer applies a client offer and returns the server's answer, with
// the server's candidates included. A server offer in flight is rolled back
// (and re-made later if still needed).
func (p *Participant) HandleOffer(ctx context.Context, offer string) (string, error) {
	info, err := ValidateOffer(offer)
	if err != nil {
		return "", err
	}
	if err := p.checkCodecs(info); err != nil {
		return "", err
	}
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.isClosed() {
		return "", ErrClosed
	}
	if p.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		// pion cannot roll back a local offer, so the server is the
		// impolite peer: the client rolls back its offer, answers ours
		// (sent through OnLocalOffer) and offers again afterwards.
		return "", ErrGlare
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	p.flushCandidates()
	desc, err := p.answer(ctx)
	if err != nil {
		return "", err
	}
	p.endedNegotiated()
	p.lastRemoteOffer = time.Now()
	// pion's answer repeats the client's Opus parameters and refuses an
	// edited local description; the client reads the SFU's from this copy.
	return withREDFirst(withOpusFECAndDTX(desc.SDP)), nil
}

// answer creates and applies the answer to the remote offer just set and
// returns it once candidates are gathered (so it carries them). p.negMu
// is held.
func (p *Participant) answer(ctx context.Context) (*webrtc.SessionDescription, error) {
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("sfu: create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return nil, fmt.Errorf("sfu: set answer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("sfu: gathering candidates: %w", ctx.Err())
	}
	return p.pc.LocalDescription(), nil
}

// endedNegotiated marks the send sections of ended subscriptions as
// reusable once an answer made them inactive. p.negMu is held.
func (p *Participant) endedNegotiated() {
	for k, n := range p.ended {
		p.freeSections[k] += n
	}
	p.ended = [3]int{}
}

// checkCodecs verifies the offer can carry every track the participant is
// subscribed to.
func (p *Participant) checkCodecs(info *OfferInfo) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for u := range p.downs {
		offered := info.Video
		if u.kind == webrtc.RTPCodecTypeAudio {
			offered = info.Audio
		}
		if len(offered) == 0 {
			continue // no m-section of this kind: the track is simply not sent
		}
		ok := false
		for _, c := range offered {
			if sameCodec(u.codec.RTPCodecCapability, c) {
				ok = true
				break
			}
		}
		if !ok {
			return &CodecError{Kind: u.kind.String(), Offered: mimeList(offered), Supported: []string{u.codec.MimeType}, Stream: true}
		}
	}
	return nil
}

// HandleAnswer applies the client's answer to the last server offer.
func (p *Participant) HandleAnswer(answer string) error {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return fmt.Errorf("%w: no offer outstanding (state %s)", ErrBadAnswer, p.pc.SignalingState())
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	p.offerOutstanding = false
	for k, n := range p.offeredEnded {
		p.freeSections[k] += n
	}
	p.offeredEnded = [3]int{}
	p.flushCandidates()
	p.requestNegotiation() // in case more changes queued up meanwhile
	return nil
}

// AddICECandidate adds a remote candidate; candidates that arrive before the
// remote description are kept until it is set.
func (p *Participant) AddICECandidate(c webrtc.ICECandidateInit) error {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.pc.RemoteDescription() == nil {
		if len(p.pendingCands) >= 64 {
			return fmt.Errorf("sfu: too many early candidates")
		}
		p.pendingCands = append(p.pendingCands, c)
		return nil
	}
	if err := p.pc.AddICECandidate(c); err != nil {
		return fmt.Errorf("sfu: add candidate: %w", err)
	}
	return nil
}

func (p *Participant) flushCandidates() {
	for _, c := range p.pendingCands {
		if err := p.pc.AddICECandidate(c); err != nil {
			p.log.Debug("early candidate rejected", "err", err)
		}
	}
	p.pendingCands = nil
}

// RestartICE applies new remote ICE credentials (a client-initiated ICE
// restart, as in a WHIP PATCH) and returns the server's new local
// description.
func (p *Participant) RestartICE(ctx context.Context, ufrag, pwd string, candidates []string) (*webrtc.SessionDescription, error) {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	rd := p.pc.RemoteDescription()
	if rd == nil || rd.Type != webrtc.SDPTypeOffer || p.pc.SignalingState() != webrtc.SignalingStateStable {
		return nil, fmt.Errorf("%w: ICE restart needs a stable session started by a client offer", ErrBadOffer)
	}
	offer, err := replaceICECredentials(rd.SDP, ufrag, pwd, candidates)
	if err != nil {
		return nil, err
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	return p.answer(ctx)
}

// requestNegotiation asks the negotiation loop for a server offer.
func (p *Participant) requestNegotiation() {
	if p.oneShot {
		return
	}
	select {
	case p.negCh <- struct{}{}:
	default:
	}
}

// negotiationDebounce coalesces track changes into one offer and keeps a
// server offer from racing the answer to a client offer on the wire.
const negotiationDebounce = 50 * time.Millisecond

func (p *Participant) negotiationLoop() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			t.Stop()
			return
		case <-p.negCh:
			t.Reset(negotiationDebounce)
		case <-t.C:
			if sdp, ok := p.makeOffer(); ok {
				p.cbMu.Lock()
				f := p.onLocalOffer
				p.cbMu.Unlock()
				if f != nil {
					f(sdp)
				}
			}
		}
	}
}

// makeOffer creates a server offer if one is needed and allowed now.
func (p *Participant) makeOffer() (string, bool) {
	p.cbMu.Lock()
	has := p.onLocalOffer != nil
	p.cbMu.Unlock()
	if !has {
		return "", false
	}
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.isClosed() || p.offerOutstanding || p.pc.SignalingState() != webrtc.SignalingStateStable {
		return "", false
	}
	if since := time.Since(p.lastRemoteOffer); since < negotiationDebounce {
		time.AfterFunc(negotiationDebounce-since, p.requestNegotiation)
		return "", false
	}
	if !p.dirty.Swap(false) {
		return "", false
	}
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.dirty.Store(true)
		p.log.Warn("create offer", "err", err)
		return "", false
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(offer); err != nil {
		p.dirty.Store(true)
		p.log.Warn("set offer", "err", err)
		return "", false
	}
	select {
	case <-gathered:
	case <-p.ctx.Done():
		return "", false
	case <-time.After(5 * time.Second):
	}
	p.offerOutstanding = true
	for k, n := range p.ended {
		p.offeredEnded[k] += n
	}
	p.ended = [3]int{}
	return withREDFirst(p.pc.LocalDescription().SDP), true // pion keeps the client's order (red.go)
}

// Renegotiate forces a server offer (through OnLocalOffer) soon.
func (p *Participant) Renegotiate() {
	p.dirty.Store(true)
	p.requestNegotiation()
}
