package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/room"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// ParticipantOptions configure Join.
type ParticipantOptions struct {
	// ID names the participant in the room; "" picks a random one.
	ID string
	// AutoSubscribe subscribes the participant to every track published in
	// the room by others, now and later.
	AutoSubscribe bool
	// OneShot marks a session that cannot be renegotiated by the server
	// (WHIP, WHEP): no OnLocalOffer, no tracks added after the answer. When
	// a track it receives ends, it is closed, unless OnSourceEnded is set.
	OneShot bool
	// OnSourceEnded, for a OneShot subscriber, keeps a subscription whose
	// track ended on the connection, idle, and reports the ended track;
	// Reattach gives it a new one (a restarting publisher continues the
	// same stream for the viewer). The policy (how long to wait, which
	// track) is the caller's: internal/whip for WHEP.
	OnSourceEnded func(ended TrackInfo)
	// OnPublished is called for each track the participant publishes.
	OnPublished func(TrackInfo)
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
	// NoPublish and NoSubscribe take rights away, for members whose token
	// lacks a grant. Without publish, media the participant sends is not
	// published (a signaling layer should also answer its sending sections
	// inactive: see WithoutSending) and its relayed data is refused; without
	// subscribe, it cannot be subscribed to anything and relayed data does
	// not reach it.
	NoPublish, NoSubscribe bool
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
	onSourceEnded func(TrackInfo)
	onPublished   func(TrackInfo)
	noPublish     bool
	noSubscribe   bool

	prefs prefs         // what this participant may receive (estimate.go)
	remb  atomic.Uint64 // the last REMB sent to it as a publisher (feedback.go)
	bwe   bwe           // its send-side estimate as a subscriber (bwe.go)
	// bweEstimate is the estimate's last value (bit/s, 0 = unconstrained).
	bweEstimate atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // RTCP readers of the down-tracks

	negMu            sync.Mutex // serializes all signaling-state changes
	offerOutstanding bool
	pendingCands     []webrtc.ICECandidateInit
	negCh            chan struct{} // nudges the negotiation loop
	dirty            atomic.Bool   // local tracks changed since the last server offer
	lastRemoteOffer  time.Time
	// Send sections of ended subscriptions, by kind, on their way to
	// reuse: ended since the last offer, ended in the outstanding offer,
	// and negotiated inactive (free, what addSender may reuse).
	ended, offeredEnded, freeSections [3]int

	cbMu         sync.Mutex
	onLocalOffer func(sdp string)
	onCandidate  func(*webrtc.ICECandidateInit)
	onClose      []func()

	data atomic.Pointer[dataRelay] // set when DataRelay is on

	writer *writer // drains every down-track's queue onto the connection

	mu     sync.Mutex
	ups    map[*webrtc.RTPReceiver]*upTrack
	downs  map[*upTrack]*downTrack
	idle   map[string]*downTrack // subscriptions whose track ended, by its ID (OnSourceEnded)
	closed bool
}

// Join creates a participant in the room of namespace ns, with its
// PeerConnection.
func (s *SFU) Join(ns Namespace, room string, opts ParticipantOptions) (*Participant, error) {
	for range 3 {
		r, err := s.Room(ns, room)
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
		id = room.NewID()
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
	p := &Participant{
		room:          r,
		id:            id,
		pc:            pc,
		writer:        newTransportWriter(),
		log:           r.sfu.log.With("room", r.name, "participant", id),
		autoSubscribe: opts.AutoSubscribe && !opts.NoSubscribe,
		noPublish:     opts.NoPublish,
		noSubscribe:   opts.NoSubscribe,
		oneShot:       opts.OneShot,
		onSourceEnded: opts.OnSourceEnded,
		onPublished:   opts.OnPublished,
		idle:          map[string]*downTrack{},
		negCh:         make(chan struct{}, 1),
		ups:           map[*webrtc.RTPReceiver]*upTrack{},
		downs:         map[*upTrack]*downTrack{},
	}
	p.prefs.maxLayer.Store(opts.MaxQuality.rank())
	p.ctx, p.cancel = context.WithCancel(r.sfu.ctx)
	if err := r.join(p); err != nil {
		_ = pc.Close()
		p.cancel()
		p.writer.stop()
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
	if p.autoSubscribe {
		for _, u := range r.tracks() {
			if u.src != Source(p) {
				if err := p.subscribe(u); err != nil {
					p.log.Warn("subscribe", "track", u.id, "err", err)
				}
			}
		}
	}
	return p, nil
}

// ID is the participant's ID in its room.
func (p *Participant) ID() string { return p.id }

// SourceID implements Source: the participant's ID.
func (p *Participant) SourceID() string { return p.id }

// RequestKeyframe implements Source: a PLI to the publisher.
func (p *Participant) RequestKeyframe(ssrc uint32) {
	if err := p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		p.log.Debug("pli", "ssrc", ssrc, "err", err)
	}
}

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
	downs := make([]*downTrack, 0, len(p.downs)+len(p.idle))
	for _, d := range p.downs {
		downs = append(downs, d)
	}
	for _, d := range p.idle {
		downs = append(downs, d)
	}
	p.mu.Unlock()

	p.cancel()
	for _, u := range ups {
		u.end()
	}
	for _, d := range downs {
		d.close()
	}
	if err := p.pc.Close(); err != nil {
		p.log.Debug("close peer connection", "err", err)
	}
	p.writer.stop()
	p.writer.wait() // after a blocked write, which the closed connection fails
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
