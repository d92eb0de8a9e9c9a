package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	// speakerInterval is how often (at most) OnActiveSpeaker fires.
	speakerInterval = 300 * time.Millisecond
	// speakerThreshold is the RFC 6464 level (-dBov) above which a packet
	// counts as speech; 127 is silence.
	speakerThreshold = 70
)

// Room is a named set of participants whose published tracks are forwarded
// to each other.
type Room struct {
	sfu  *SFU
	ns   Namespace
	name string

	mu           sync.Mutex
	participants map[string]*Participant
	pubs         []*upTrack
	changed      chan struct{} // closed and replaced whenever pubs changes
	onSpeaker    func(participantID string)
	speaker      string
	speakerStop  context.CancelFunc
	speakerDone  chan struct{}
	closed       bool
}

func newRoom(s *SFU, ns Namespace, name string) *Room {
	return &Room{sfu: s, ns: ns, name: name, participants: map[string]*Participant{}, changed: make(chan struct{})}
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// Namespace is the room's namespace.
func (r *Room) Namespace() Namespace { return r.ns }

// Participants returns the current participants.
func (r *Room) Participants() []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		out = append(out, p)
	}
	return out
}

// Participant returns the participant with this ID.
func (r *Room) Participant(id string) (*Participant, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.participants[id]
	return p, ok
}

// Tracks describes the tracks currently published in the room.
func (r *Room) Tracks() []TrackInfo {
	ts := r.tracks()
	out := make([]TrackInfo, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.info())
	}
	return out
}

func (r *Room) tracks() []*upTrack {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*upTrack(nil), r.pubs...)
}

// track finds a published track by its TrackInfo.ID.
func (r *Room) track(id string) (*upTrack, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.pubs {
		if t.id == id {
			return t, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoSuchTrack, id)
}

// WaitTracks waits until at least n tracks are published or ctx ends, and
// returns the number of published tracks.
func (r *Room) WaitTracks(ctx context.Context, n int) int {
	for {
		r.mu.Lock()
		have, ch := len(r.pubs), r.changed
		r.mu.Unlock()
		if have >= n {
			return have
		}
		select {
		case <-ctx.Done():
			return have
		case <-ch:
		}
	}
}

// OnActiveSpeaker sets a callback fired (at most every 300 ms) when the
// loudest publisher of audio changes. The callback runs on the room's
// speaker goroutine and must not block for long.
func (r *Room) OnActiveSpeaker(f func(participantID string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onSpeaker = f
	if f == nil || r.speakerStop != nil || r.closed {
		return
	}
	ctx, cancel := context.WithCancel(r.sfu.ctx)
	r.speakerStop = cancel
	r.speakerDone = make(chan struct{})
	go r.speakerLoop(ctx, r.speakerDone)
}

func (r *Room) speakerLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	every(ctx, speakerInterval, r.speakerTick)
}

// every calls f each interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}

// speakerTick picks the participant whose audio was loudest over the last
// interval.
func (r *Room) speakerTick() {
	loud := map[string]uint64{}
	for _, u := range r.tracks() {
		if v := u.level.Swap(0); v > 0 {
			loud[u.src.SourceID()] += v
		}
	}
	best, bestV := "", uint64(0)
	for id, v := range loud {
		if v > bestV || (v == bestV && id < best) {
			best, bestV = id, v
		}
	}
	if best == "" {
		return
	}
	r.mu.Lock()
	f := r.onSpeaker
	changed := best != r.speaker
	r.speaker = best
	r.mu.Unlock()
	if changed && f != nil {
		f(best)
	}
}

// ActiveSpeaker is the participant OnActiveSpeaker last named ("" before
// anyone spoke), for telling newcomers.
func (r *Room) ActiveSpeaker() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.speaker
}

// ErrDuplicateParticipant is returned by Join for an ID already in the room.
var ErrDuplicateParticipant = fmt.Errorf("sfu: participant already in room")

func (r *Room) join(p *Participant) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if _, dup := r.participants[p.id]; dup {
		r.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrDuplicateParticipant, p.id)
	}
	r.participants[p.id] = p
	r.mu.Unlock()
	r.notifyChange()
	return nil
}

func (r *Room) leave(p *Participant) {
	r.mu.Lock()
	if r.participants[p.id] == p {
		delete(r.participants, p.id)
	}
	r.mu.Unlock()
	r.sfu.removeRoomIfEmpty(r)
	r.notifyChange()
}

// notifyChange tells Config.OnRoomChange that r's participants or
// tracks changed; called with no lock held.
func (r *Room) notifyChange() {
	if f := r.sfu.cfg.OnRoomChange; f != nil {
		f(r.ns, r.name)
	}
}

func (r *Room) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.participants) == 0 && len(r.pubs) == 0
}

// addTrack publishes u and subscribes every auto-subscribing participant;
// false when the room has closed.
func (r *Room) addTrack(u *upTrack) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	// A track of the same ID from another source is the same member's
	// same track, published here again: its relay from another node gives
	// way to the member that moved here (internal/signal/move.go), which
	// may come before the relay ends.
	var stale []*upTrack
	for _, o := range r.pubs {
		if o.id == u.id && o.src != u.src {
			stale = append(stale, o)
		}
	}
	r.pubs = append(r.pubs, u)
	close(r.changed)
	r.changed = make(chan struct{})
	var subs []*Participant
	for _, p := range r.participants {
		if Source(p) != u.src && p.autoSubscribe && p.canAddTracks() {
			subs = append(subs, p)
		}
	}
	r.mu.Unlock()
	for _, o := range stale {
		r.sfu.log.Info("a track replaces another of the same ID", "room", r.name, "track", u.id)
		o.end()
	}
	r.notifyChange()

	for _, p := range subs {
		if err := p.subscribe(u); err != nil {
			level := slog.LevelWarn
			if errors.Is(err, ErrClosed) || errors.Is(err, webrtc.ErrConnectionClosed) {
				level = slog.LevelDebug // the subscriber left meanwhile: nothing went wrong
			}
			r.sfu.log.Log(context.Background(), level, "auto-subscribe failed", "room", r.name, "participant", p.id, "track", u.id, "err", err)
		}
	}
	return true
}

// removeTrack unpublishes u and tells each subscription that its source
// ended.
func (r *Room) removeTrack(u *upTrack) {
	r.mu.Lock()
	for i, x := range r.pubs {
		if x == u {
			r.pubs = append(r.pubs[:i:i], r.pubs[i+1:]...)
			close(r.changed)
			r.changed = make(chan struct{})
			break
		}
	}
	r.mu.Unlock()
	for _, d := range u.subs.load() {
		u.subs.remove(d)
		if d.onEnded != nil {
			d.onEnded(d, u)
		}
	}
	r.sfu.removeRoomIfEmpty(r)
	r.notifyChange()
}

// close stops the room's goroutines.
func (r *Room) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	stop, done := r.speakerStop, r.speakerDone
	r.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}
