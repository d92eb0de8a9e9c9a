// Package sfusignal carries server-routed (SFU) rooms over Parley's
// signaling protocol: it gives each member of an sfu-mode room a
// participant in internal/sfu, turns "media" messages into offers,
// answers, candidates and subscription preferences, and announces the
// room's tracks and active speaker. It knows the protocol's JSON, not the
// transport.
package sfusignal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/protocol"
)

// Bridge makes media sessions for sfu-mode rooms.
type Bridge struct {
	sfu *sfu.SFU
	log *slog.Logger

	mu    sync.Mutex
	rooms map[*sfu.Room]*roomWatch // keyed by the room object: a name can be reused after a room closes
}

// New returns a bridge onto s.
func New(s *sfu.SFU, log *slog.Logger) *Bridge {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bridge{sfu: s, log: log.With("plane", "sfusignal"), rooms: map[*sfu.Room]*roomWatch{}}
}

// Session is one member's media session.
type Session struct {
	b    *Bridge
	room *sfu.Room
	id   string
	p    *sfu.Participant
	send func(protocol.Message)

	deflate     atomic.Bool // the member sends compact SDP, so it gets compact SDP
	firstAnswer sync.Once   // server offers start after the member's first offer is answered
}

// Join creates member id's participant in room. send must not block; it
// delivers server messages ("media", "tracks", "speaker") to the member.
func (b *Bridge) Join(room, id string, send func(protocol.Message)) (*Session, error) {
	p, err := b.sfu.Join(sfu.Calls, room, sfu.ParticipantOptions{ID: id, AutoSubscribe: true, DataRelay: true})
	if err != nil {
		return nil, fmt.Errorf("media join: %w", err)
	}
	s := &Session{b: b, room: p.Room(), id: id, p: p, send: send}
	// The server makes no offer before it has answered the member's first
	// one (see Handle): a server offer racing the browser's first offer
	// leaves Chromium renegotiating on top of the server's SDP (DTLS roles,
	// header-extension ids, no data channel yet).
	p.OnICECandidate(func(c *webrtc.ICECandidateInit) {
		if c != nil {
			s.sendMedia(mediaData{Candidate: c})
		}
	})
	b.watch(s)
	return s, nil
}

// mediaData is the payload of a "media" message, both directions.
type mediaData struct {
	SDP        *protocol.SDP            `json:"sdp,omitempty"`
	Candidate  *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Subscribe  *subscription            `json:"subscribe,omitempty"`
	MaxBitrate *uint64                  `json:"maxBitrate,omitempty"`
	Error      *protocol.Message        `json:"error,omitempty"`
}

type subscription struct {
	Track   string `json:"track"`
	Quality string `json:"quality"` // low, medium, high (default)
	Paused  bool   `json:"paused"`
}

// Error codes inside media errors.
const (
	CodeGlare       = "glare"
	CodeBadSDP      = "bad-sdp"
	CodeCodec       = "unsupported-codec"
	CodeNoSuchTrack = "no-such-track"
	CodeBadMedia    = "bad-media"
)

func (s *Session) sendMedia(d mediaData) {
	raw, err := json.Marshal(d)
	if err != nil {
		return
	}
	s.send(protocol.Message{Type: protocol.TypeMedia, Data: raw})
}

// sendSDP sends a session description, in the compact form to a member
// that uses it.
func (s *Session) sendSDP(typ webrtc.SDPType, sdp string) {
	d := protocol.SDP{Type: typ.String(), SDP: sdp}
	if s.deflate.Load() {
		d = protocol.DeflateSDP(typ.String(), sdp)
	}
	s.sendMedia(mediaData{SDP: &d})
}

func (s *Session) fail(code, msg string) {
	s.sendMedia(mediaData{Error: &protocol.Message{Code: code, Message: msg}})
}

// Handle applies one "media" message from the member.
func (s *Session) Handle(raw json.RawMessage) {
	var d mediaData
	if err := json.Unmarshal(raw, &d); err != nil {
		s.fail(CodeBadMedia, "media data must be an object with sdp, candidate, subscribe or maxBitrate")
		return
	}
	var text string
	if d.SDP != nil {
		var err error
		if text, err = d.SDP.Text(); err != nil {
			s.fail(CodeBadSDP, err.Error())
			return
		}
		if d.SDP.Deflate != "" {
			s.deflate.Store(true)
		}
	}
	switch {
	case d.SDP != nil && d.SDP.Type == webrtc.SDPTypeOffer.String():
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		answer, err := s.p.HandleOffer(ctx, text)
		if err != nil {
			s.fail(codeOf(err), err.Error())
			return
		}
		s.sendSDP(webrtc.SDPTypeAnswer, answer)
		s.firstAnswer.Do(func() {
			s.p.OnLocalOffer(func(sdp string) { s.sendSDP(webrtc.SDPTypeOffer, sdp) })
			s.p.Renegotiate() // others' tracks waiting since the join
		})
	case d.SDP != nil && d.SDP.Type == webrtc.SDPTypeAnswer.String():
		if err := s.p.HandleAnswer(text); err != nil {
			s.fail(CodeBadSDP, err.Error())
		}
	case d.SDP != nil:
		s.fail(CodeBadSDP, "sdp.type must be offer or answer")
	case d.Candidate != nil:
		if err := s.p.AddICECandidate(*d.Candidate); err != nil {
			s.b.log.Debug("candidate", "member", s.id, "err", err)
		}
	case d.Subscribe != nil:
		q, ok := qualities[d.Subscribe.Quality]
		if !ok {
			s.fail(CodeBadMedia, "quality is low, medium or high")
			return
		}
		if err := s.p.SetTrackPreference(d.Subscribe.Track, q, d.Subscribe.Paused); err != nil {
			s.fail(CodeNoSuchTrack, err.Error())
		}
	case d.MaxBitrate != nil:
		s.p.SetMaxBitrate(*d.MaxBitrate)
	default:
		s.fail(CodeBadMedia, "media data must carry sdp, candidate, subscribe or maxBitrate")
	}
}

var qualities = map[string]sfu.Quality{"": sfu.QualityHigh, "high": sfu.QualityHigh, "medium": sfu.QualityMedium, "low": sfu.QualityLow}

func codeOf(err error) string {
	var ce *sfu.CodecError
	switch {
	case errors.Is(err, sfu.ErrGlare):
		return CodeGlare
	case errors.As(err, &ce):
		return CodeCodec
	}
	return CodeBadSDP
}

// Close ends the member's participant (its tracks end for the others).
func (s *Session) Close() {
	s.p.Close()
	s.b.unwatch(s.room, s)
}

// roomWatch announces one room's tracks and speaker to its sessions; its
// goroutine lives while the room has sessions.
type roomWatch struct {
	sessions map[*Session]struct{}
	cancel   context.CancelFunc
}

func (b *Bridge) watch(s *Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := s.room
	w := b.rooms[r]
	if w == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w = &roomWatch{sessions: map[*Session]struct{}{}, cancel: cancel}
		b.rooms[r] = w
		r.OnActiveSpeaker(func(id string) { b.broadcast(r, protocol.Message{Type: protocol.TypeSpeaker, ID: id}) })
		go b.announceTracks(ctx, r)
	}
	w.sessions[s] = struct{}{}
	s.send(tracksMessage(r)) // the newcomer learns the current list at once
	if id := r.ActiveSpeaker(); id != "" {
		s.send(protocol.Message{Type: protocol.TypeSpeaker, ID: id}) // and who speaks: it is only re-sent on a change
	}
}

func (b *Bridge) unwatch(room *sfu.Room, s *Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.rooms[room]
	if w == nil {
		return
	}
	delete(w.sessions, s)
	if len(w.sessions) == 0 {
		w.cancel()
		delete(b.rooms, room)
	}
}

func (b *Bridge) broadcast(room *sfu.Room, m protocol.Message) {
	b.mu.Lock()
	w := b.rooms[room]
	var all []*Session
	if w != nil {
		for s := range w.sessions {
			all = append(all, s)
		}
	}
	b.mu.Unlock()
	for _, s := range all {
		s.send(m)
	}
}

func (b *Bridge) announceTracks(ctx context.Context, r *sfu.Room) {
	for {
		ch := r.Changed()
		select {
		case <-ch:
			b.broadcast(r, tracksMessage(r))
		case <-ctx.Done():
			return
		}
	}
}

func tracksMessage(r *sfu.Room) protocol.Message {
	raw, _ := json.Marshal(r.Tracks())
	return protocol.Message{Type: protocol.TypeTracks, Data: raw}
}
