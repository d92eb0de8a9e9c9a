package sfu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// Quality is a subscriber's preferred maximum simulcast layer.
type Quality int

// Simulcast quality preferences. The zero value means "highest available".
const (
	QualityHigh   Quality = iota // highest layer (default)
	QualityLow                   // lowest layer ("q", "l" or "0")
	QualityMedium                // middle layer ("h", "m" or "1")
)

func (q Quality) rank() int32 {
	switch q {
	case QualityLow:
		return 0
	case QualityMedium:
		return 1
	}
	return 2
}

// ParticipantOptions configure Join.
type ParticipantOptions struct {
	// ID names the participant in the room; "" picks a random one.
	ID string
	// AutoSubscribe subscribes the participant to every track published in
	// the room by others, now and later.
	AutoSubscribe bool
	// OneShot marks a session that cannot be renegotiated by the server
	// (WHIP, WHEP): no OnLocalOffer. When a subscribed publisher leaves, the
	// down-track is kept for ReattachGrace so a restarting publisher continues
	// the same stream; after that the participant is closed.
	OneShot bool
	// ReattachGrace applies to OneShot subscribers; 0 means 5 s, negative
	// closes the participant as soon as a subscribed track ends.
	ReattachGrace time.Duration
	// ReceiveOnly marks a participant that never publishes (a WHEP
	// viewer): its connection is built without the receive-side
	// interceptors (NACK generation, receiver reports, TWCC feedback),
	// which saves a few goroutines and timers per viewer.
	ReceiveOnly bool
	// MaxQuality caps the simulcast layer the participant receives.
	MaxQuality Quality
	// ICEServers are used by the server's side of the connection (rarely needed).
	ICEServers []webrtc.ICEServer
	// DataRelay opens the "parley" data channel whose messages the server
	// relays to the rest of the room (see datarelay.go).
	DataRelay bool
}

// Participant is one client's PeerConnection with the SFU: the tracks it
// publishes and the down-tracks it is subscribed to.
//
// Signaling: call HandleOffer for every client offer (the answer goes back
// to the client) and HandleAnswer for every answer to a server offer.
// Server-initiated offers (tracks to add or remove) are delivered through
// OnLocalOffer; they are never produced while another offer is outstanding
// or within 50 ms of a client offer. When offers collide (glare), the server
// is the impolite peer, because pion cannot roll back a local offer:
// HandleOffer returns ErrGlare, and the client (a browser doing "perfect
// negotiation" with polite=true) rolls back, answers the server's offer and
// re-sends its own. Candidates go both ways with
// AddICECandidate / OnICECandidate; answers and offers also carry the
// server's candidates, so trickle is optional.
type Participant struct {
	room          *Room
	id            string
	pc            *webrtc.PeerConnection
	log           *slog.Logger
	autoSubscribe bool
	oneShot       bool
	grace         time.Duration

	maxLayer      atomic.Int32
	explicitLimit atomic.Uint64 // SetMaxBitrate, bps; 0 = none
	rembLimit     atomic.Uint64 // last REMB from the subscriber, bps; 0 = none
	lastLoss      atomic.Int64  // unix nanos of the last receiver report with loss
	estimate      atomic.Uint64 // effective budget, bps; 0 = unlimited

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // RTCP readers of the down-tracks

	negMu            sync.Mutex // serializes all signaling-state changes
	offerOutstanding bool
	pendingCands     []webrtc.ICECandidateInit
	negCh            chan struct{} // nudges the negotiation loop
	dirty            atomic.Bool   // local tracks changed since the last server offer
	lastRemoteOffer  time.Time

	cbMu         sync.Mutex
	onLocalOffer func(sdp string)
	onCandidate  func(*webrtc.ICECandidateInit)
	onClose      []func()

	data atomic.Pointer[dataRelay] // set when DataRelay is on

	mu     sync.Mutex
	ups    map[*webrtc.RTPReceiver]*upTrack
	downs  map[*upTrack]*downTrack
	closed bool
}

// Join creates a participant in the room, with its PeerConnection.
func (s *SFU) Join(room string, opts ParticipantOptions) (*Participant, error) {
	for range 3 {
		r, err := s.Room(room)
		if err != nil {
			return nil, err
		}
		p, err := r.Join(opts)
		if errors.Is(err, ErrClosed) {
			continue // the room emptied and closed between lookup and join
		}
		return p, err
	}
	return nil, fmt.Errorf("sfu: join %s: %w", room, ErrClosed)
}

// Join creates a participant in r. Prefer SFU.Join, which retries when an
// empty room is being removed concurrently.
func (r *Room) Join(opts ParticipantOptions) (*Participant, error) {
	id := opts.ID
	if id == "" {
		id = randomID()
	}
	ice := opts.ICEServers
	if ice == nil && r.sfu.cfg.ICEServers != nil {
		ice = r.sfu.cfg.ICEServers()
	}
	api := r.sfu.api
	if opts.ReceiveOnly {
		api = r.sfu.viewAPI
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		ICEServers:   ice,
		BundlePolicy: webrtc.BundlePolicyMaxBundle,
	})
	if err != nil {
		return nil, fmt.Errorf("sfu: new peer connection: %w", err)
	}
	grace := opts.ReattachGrace
	if grace == 0 {
		grace = 5 * time.Second
	}
	p := &Participant{
		room:          r,
		id:            id,
		pc:            pc,
		log:           r.sfu.log.With("room", r.name, "participant", id),
		autoSubscribe: opts.AutoSubscribe,
		oneShot:       opts.OneShot,
		grace:         grace,
		negCh:         make(chan struct{}, 1),
		ups:           map[*webrtc.RTPReceiver]*upTrack{},
		downs:         map[*upTrack]*downTrack{},
	}
	p.maxLayer.Store(opts.MaxQuality.rank())
	p.ctx, p.cancel = context.WithCancel(r.sfu.ctx)
	if err := r.join(p); err != nil {
		_ = pc.Close()
		p.cancel()
		return nil, err
	}
	if opts.DataRelay {
		if err := p.enableDataRelay(); err != nil {
			p.Close()
			return nil, err
		}
	}
	pc.OnTrack(p.onTrack)
	pc.OnICECandidate(p.onICECandidate)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		p.log.Debug("connection state", "state", st.String())
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			go p.Close()
		}
	})
	if !p.oneShot {
		// Ends with p.ctx; Close does not wait for it, so that a callback
		// running on it may call Close.
		go p.negotiationLoop()
	}
	if opts.AutoSubscribe {
		for _, u := range r.tracks() {
			if u.owner != p {
				if err := p.subscribe(u); err != nil {
					p.log.Warn("subscribe", "track", u.id, "err", err)
				}
			}
		}
	}
	return p, nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID is the participant's ID in its room.
func (p *Participant) ID() string { return p.id }

// Room is the participant's room.
func (p *Participant) Room() *Room { return p.room }

// Done is closed when the participant has been closed.
func (p *Participant) Done() <-chan struct{} { return p.ctx.Done() }

// PeerConnection exposes the underlying pion connection (read-only use:
// stats, state); signaling must go through the Participant's methods.
func (p *Participant) PeerConnection() *webrtc.PeerConnection { return p.pc }

// OnLocalOffer sets the callback that receives server-initiated offers; the
// signaling layer sends each to the client and passes the reply to
// HandleAnswer. Without it the server never renegotiates.
func (p *Participant) OnLocalOffer(f func(sdp string)) {
	p.cbMu.Lock()
	p.onLocalOffer = f
	p.cbMu.Unlock()
	p.requestNegotiation()
}

// OnICECandidate sets the callback for the server's trickled candidates;
// nil marks the end of candidates.
func (p *Participant) OnICECandidate(f func(*webrtc.ICECandidateInit)) {
	p.cbMu.Lock()
	defer p.cbMu.Unlock()
	p.onCandidate = f
}

// OnClose adds a callback run once when the participant is closed.
func (p *Participant) OnClose(f func()) {
	p.cbMu.Lock()
	defer p.cbMu.Unlock()
	p.onClose = append(p.onClose, f)
}

func (p *Participant) onICECandidate(c *webrtc.ICECandidate) {
	p.cbMu.Lock()
	f := p.onCandidate
	p.cbMu.Unlock()
	if f == nil {
		return
	}
	if c == nil {
		f(nil)
		return
	}
	init := c.ToJSON()
	f(&init)
}

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
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("sfu: create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("sfu: set answer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("sfu: gathering candidates: %w", ctx.Err())
	}
	p.lastRemoteOffer = time.Now()
	return p.pc.LocalDescription().SDP, nil
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
	return p.pc.LocalDescription().SDP, true
}

// Renegotiate forces a server offer (through OnLocalOffer) soon.
func (p *Participant) Renegotiate() {
	p.dirty.Store(true)
	p.requestNegotiation()
}

// onTrack registers a published stream (a simulcast layer joins the track
// of its receiver).
func (p *Participant) onTrack(remote *webrtc.TrackRemote, rec *webrtc.RTPReceiver) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	up, exists := p.ups[rec]
	if !exists {
		up = newUpTrack(p, remote)
		p.ups[rec] = up
	}
	p.mu.Unlock()
	p.log.Info("track published", "track", up.id, "kind", up.kind.String(), "codec", up.codec.MimeType, "rid", remote.RID())
	if up.addLayer(remote, rec) == nil {
		return
	}
	if !exists {
		p.room.addTrack(up)
	}
}

// canAddTracks reports whether a new subscription can still reach the
// client: always for renegotiating sessions, only before the answer for
// one-shot ones.
func (p *Participant) canAddTracks() bool {
	if !p.oneShot {
		return true
	}
	return p.pc.CurrentLocalDescription() == nil && p.pc.PendingLocalDescription() == nil
}

// Subscribe subscribes the participant to a track of the room by its
// TrackInfo.ID.
func (p *Participant) Subscribe(trackID string) error {
	for _, u := range p.room.tracks() {
		if u.id == trackID {
			return p.subscribe(u)
		}
	}
	return fmt.Errorf("%w: %s", ErrNoSuchTrack, trackID)
}

// Unsubscribe ends the subscription to a track.
func (p *Participant) Unsubscribe(trackID string) error {
	p.mu.Lock()
	var d *downTrack
	for u, x := range p.downs {
		if u.id == trackID {
			d = x
			delete(p.downs, u)
			break
		}
	}
	p.mu.Unlock()
	if d == nil {
		return fmt.Errorf("%w: %s", ErrNoSuchTrack, trackID)
	}
	p.dropDownTrack(d)
	return nil
}

func (p *Participant) subscribe(u *upTrack) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if _, ok := p.downs[u]; ok {
		p.mu.Unlock()
		return nil
	}
	d := newDownTrack(p, u)
	p.downs[u] = d
	p.mu.Unlock()

	sender, err := p.pc.AddTrack(d)
	if err != nil {
		p.mu.Lock()
		delete(p.downs, u)
		p.mu.Unlock()
		return fmt.Errorf("sfu: add track: %w", err)
	}
	d.sender = sender
	u.addSub(d)
	d.retarget()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		d.readRTCP()
	}()
	p.dirty.Store(true)
	p.requestNegotiation()
	return nil
}

// adopt re-attaches a parked down-track to a restarted publisher's track.
func (p *Participant) adopt(d *downTrack, u *upTrack) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	for old, x := range p.downs {
		if x == d {
			delete(p.downs, old)
		}
	}
	p.downs[u] = d
	p.mu.Unlock()
	d.up.Store(u)
	u.addSub(d)
	d.retarget()
	p.log.Info("subscriber re-attached to restarted track", "track", u.id)
}

// sourceEnded is called when the track behind d was unpublished.
func (p *Participant) sourceEnded(d *downTrack, u *upTrack) {
	if p.oneShot {
		if p.grace < 0 {
			go p.Close()
			return
		}
		p.room.park(d, p.grace)
		return
	}
	p.mu.Lock()
	if p.downs[u] == d {
		delete(p.downs, u)
	}
	p.mu.Unlock()
	p.dropDownTrack(d)
}

func (p *Participant) dropDownTrack(d *downTrack) {
	d.close()
	if d.sender != nil && !p.isClosed() {
		p.negMu.Lock()
		err := p.pc.RemoveTrack(d.sender)
		p.negMu.Unlock()
		if err != nil {
			p.log.Debug("remove track", "err", err)
		}
	}
	p.dirty.Store(true)
	p.requestNegotiation()
}

// SetMaxQuality caps the simulcast layer this participant receives.
func (p *Participant) SetMaxQuality(q Quality) {
	p.maxLayer.Store(q.rank())
	p.retargetAll()
}

// SetMaxBitrate sets an explicit bandwidth budget (bits per second, 0 = no
// limit) for each simulcast video track the participant receives; layers
// switch down (and back up) on the target layer's next keyframe.
func (p *Participant) SetMaxBitrate(bps uint64) {
	p.explicitLimit.Store(bps)
	p.updateEstimate()
}

// lossWindow is how long a loss report keeps REMB in force.
const lossWindow = 5 * time.Second

// lossThreshold is the reported fraction lost (of 256) that counts as
// congestion: about 2 %.
const lossThreshold = 5

// setEstimateFromREMB applies a subscriber's REMB as a budget only while
// it also reports loss. The SFU forwards without probing, so a receiver's
// estimate cannot grow past what it already gets: trusted blindly, REMB
// pins every viewer to the lowest layer for good. With loss it is a real
// congestion signal; without loss for lossWindow the budget is lifted and
// the layer climbs again.
func (p *Participant) setEstimateFromREMB(bps uint64) {
	if time.Since(time.Unix(0, p.lastLoss.Load())) > lossWindow {
		bps = 0
	}
	if p.rembLimit.Swap(bps) != bps {
		p.updateEstimate()
	}
}

// noteLoss records a receiver report's fraction lost.
func (p *Participant) noteLoss(fractionLost uint8) {
	if fractionLost >= lossThreshold {
		p.lastLoss.Store(time.Now().UnixNano())
	}
}

func (p *Participant) updateEstimate() {
	a, b := p.explicitLimit.Load(), p.rembLimit.Load()
	e := a
	if e == 0 || (b != 0 && b < e) {
		e = b
	}
	if p.estimate.Swap(e) != e {
		p.retargetAll()
	}
}

func (p *Participant) retargetAll() {
	for _, d := range p.downTracks() {
		d.retarget()
	}
}

// downTracks snapshots the participant's subscriptions, so callers can
// work on them without holding p.mu.
func (p *Participant) downTracks() []*downTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	ds := make([]*downTrack, 0, len(p.downs))
	for _, d := range p.downs {
		ds = append(ds, d)
	}
	return ds
}

// Tracks describes the tracks this participant publishes.
func (p *Participant) Tracks() []TrackInfo {
	p.mu.Lock()
	ups := make([]*upTrack, 0, len(p.ups))
	for _, u := range p.ups {
		ups = append(ups, u)
	}
	p.mu.Unlock()
	out := make([]TrackInfo, 0, len(ups))
	for _, u := range ups {
		out = append(out, u.info())
	}
	return out
}

// ParticipantStats are one participant's forwarding counters.
type ParticipantStats struct {
	Published  int    `json:"published"`
	Subscribed int    `json:"subscribed"`
	Packets    uint64 `json:"packets"` // sent to this participant
	Bytes      uint64 `json:"bytes"`
	Dropped    uint64 `json:"dropped"`
}

// Stats returns the participant's counters.
func (p *Participant) Stats() ParticipantStats {
	p.mu.Lock()
	st := ParticipantStats{Published: len(p.ups)}
	p.mu.Unlock()
	ds := p.downTracks()
	st.Subscribed = len(ds)
	for _, d := range ds {
		a, b, c := d.counts()
		st.Packets += a
		st.Bytes += b
		st.Dropped += c
	}
	return st
}

func (p *Participant) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Close ends the participant: its tracks are unpublished, its
// subscriptions dropped and its PeerConnection closed. Safe to call twice.
func (p *Participant) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	ups := make([]*upTrack, 0, len(p.ups))
	for _, u := range p.ups {
		ups = append(ups, u)
	}
	downs := make([]*downTrack, 0, len(p.downs))
	for _, d := range p.downs {
		downs = append(downs, d)
	}
	p.mu.Unlock()

	p.cancel()
	p.room.unpark(p)
	for _, u := range ups {
		u.end()
	}
	for _, d := range downs {
		d.close()
	}
	if err := p.pc.Close(); err != nil {
		p.log.Debug("close peer connection", "err", err)
	}
	for _, u := range ups {
		u.wg.Wait()
	}
	p.wg.Wait()
	p.room.leave(p)
	p.cbMu.Lock()
	fs := p.onClose
	p.onClose = nil
	p.cbMu.Unlock()
	for _, f := range fs {
		f()
	}
	p.log.Info("participant closed")
}
