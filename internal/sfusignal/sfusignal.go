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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
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

// Session is one member's media session. Its participant may be closed by
// the server (ICE or DTLS failed): the member is then told with a
// "media-closed" message, and its next offer from a new connection gets a
// new participant.
type Session struct {
	b      *Bridge
	name   string // the room's
	id     string
	grants auth.Grants
	send   func(protocol.Message)

	deflate atomic.Bool // the member sends compact SDP, so it gets compact SDP

	mu       sync.Mutex
	room     *sfu.Room        // watched for tracks and speaker
	p        *sfu.Participant // nil once the server closed it, until the next offer
	answered bool             // p has answered a member offer: server offers may start
	// deadPrint is the DTLS fingerprint of the member's connection whose
	// participant the server closed: an offer still made by that
	// connection (an ICE restart racing media-closed) cannot be answered
	// by a new participant.
	deadPrint string
	closed    bool
}

// Join creates member id's participant in room, with what its grants allow
// (auth.AllGrants on an open server). send must not block; it delivers
// server messages ("media", "tracks", "speaker", "media-closed") to the
// member.
func (b *Bridge) Join(room, id string, g auth.Grants, send func(protocol.Message)) (*Session, error) {
	s := &Session{b: b, name: room, id: id, grants: g, send: send}
	p, err := s.participant()
	if err != nil {
		return nil, err
	}
	s.p, s.room = p, p.Room()
	b.watch(s, s.room)
	return s, nil
}

// participant makes a participant for the member. The server makes no
// offer before it has answered the member's first one (see Handle): a
// server offer racing the browser's first offer leaves Chromium
// renegotiating on top of the server's SDP (DTLS roles, header-extension
// ids, no data channel yet).
func (s *Session) participant() (*sfu.Participant, error) {
	p, err := s.b.sfu.Join(sfu.Calls, s.name, sfu.ParticipantOptions{ID: s.id, AutoSubscribe: true, DataRelay: true,
		NoPublish: !s.grants.Publish, NoSubscribe: !s.grants.Subscribe})
	if err != nil {
		return nil, fmt.Errorf("media join: %w", err)
	}
	p.OnICECandidate(func(c *webrtc.ICECandidateInit) {
		if c != nil {
			s.sendMedia(mediaData{Candidate: c})
		}
	})
	p.OnClose(func() { s.participantClosed(p) })
	return p, nil
}

// participantClosed runs when p has been closed, by Close or by the server
// (its connection failed or closed): in the second case the member learns
// that its media are gone and that a fresh offer will be answered.
func (s *Session) participantClosed(p *sfu.Participant) {
	s.mu.Lock()
	if s.closed || s.p != p {
		s.mu.Unlock()
		return
	}
	s.p, s.answered = nil, false
	if rd := p.PeerConnection().RemoteDescription(); rd != nil {
		s.deadPrint = fingerprint(rd.SDP)
	}
	s.mu.Unlock()
	s.b.log.Info("media closed by the server", "room", s.name, "member", s.id)
	s.send(protocol.Message{Type: protocol.TypeMediaClosed,
		Message: "the server closed your media connection (ICE or DTLS failed); offer again from a new connection"})
}

// current returns the member's participant, making a new one for an offer
// after the server closed the last (offer is the offer's text, "" for any
// other message).
func (s *Session) current(offer string) (*sfu.Participant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, sfu.ErrClosed
	case s.p != nil:
		return s.p, nil
	case offer == "":
		return nil, errMediaClosed
	case s.deadPrint != "" && fingerprint(offer) == s.deadPrint:
		return nil, errStaleOffer
	}
	p, err := s.participant()
	if err != nil {
		return nil, err
	}
	s.p = p
	if r := p.Room(); r != s.room {
		s.b.unwatch(s.room, s)
		s.room = r
		s.b.watch(s, r)
	} else {
		greet(s, r) // the new connection's client re-sends its preferences on it
	}
	return p, nil
}

var (
	errMediaClosed = errors.New("your media connection was closed; offer again from a new connection")
	errStaleOffer  = errors.New("this offer comes from the connection the server closed; offer again from a new connection")
)

// fingerprint is the first DTLS fingerprint of a session description.
func fingerprint(sdp string) string {
	_, rest, ok := strings.Cut(sdp, "a=fingerprint:")
	if !ok {
		return ""
	}
	line, _, _ := strings.Cut(rest, "\n")
	return strings.TrimSpace(line)
}

// mediaData is the payload of a "media" message, both directions.
type mediaData struct {
	SDP        *protocol.SDP            `json:"sdp,omitempty"`
	Candidate  *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Subscribe  *subscription            `json:"subscribe,omitempty"`
	MaxBitrate *uint64                  `json:"maxBitrate,omitempty"`
	Unmute     *subscription            `json:"unmute,omitempty"` // track: one of the member's own, muted by a moderator
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
	CodeForbidden   = protocol.CodeForbidden // the member's grants do not allow it
	// CodeMediaClosed: the server closed the member's media connection;
	// only an offer from a new connection is taken.
	CodeMediaClosed = "media-closed"
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

// Handle applies one "media" message from the member. Every message the
// member may not send, or that fails, is answered with a media error; the
// session stays usable.
func (s *Session) Handle(raw json.RawMessage) {
	var d mediaData
	if err := json.Unmarshal(raw, &d); err != nil {
		s.fail(CodeBadMedia, "media data must be an object with sdp, candidate, subscribe, maxBitrate or unmute")
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
	offer := ""
	if d.SDP != nil && d.SDP.Type == webrtc.SDPTypeOffer.String() {
		offer = text
	}
	p, err := s.current(offer)
	if err != nil {
		code := CodeMediaClosed
		if !errors.Is(err, errMediaClosed) && !errors.Is(err, errStaleOffer) {
			code = CodeBadSDP
		}
		if d.Candidate == nil { // candidates of a closed connection just go
			s.fail(code, err.Error())
		}
		return
	}
	switch {
	case offer != "":
		s.offer(p, offer)
	case d.SDP != nil && d.SDP.Type == webrtc.SDPTypeAnswer.String():
		if err := p.HandleAnswer(text); err != nil {
			s.fail(CodeBadSDP, err.Error())
		}
	case d.SDP != nil:
		s.fail(CodeBadSDP, "sdp.type must be offer or answer")
	case d.Candidate != nil:
		if err := p.AddICECandidate(*d.Candidate); err != nil {
			s.b.log.Debug("candidate", "member", s.id, "err", err)
		}
	case d.Subscribe != nil:
		q, ok := qualities[d.Subscribe.Quality]
		switch {
		case !s.grants.Subscribe:
			s.fail(CodeForbidden, "receiving media needs the subscribe grant")
		case !ok:
			s.fail(CodeBadMedia, "quality is low, medium or high")
		default:
			if err := p.SetTrackPreference(d.Subscribe.Track, q, d.Subscribe.Paused); err != nil {
				s.fail(CodeNoSuchTrack, err.Error())
			}
		}
	case d.MaxBitrate != nil:
		p.SetMaxBitrate(*d.MaxBitrate)
	case d.Unmute != nil:
		s.unmute(d.Unmute.Track)
	default:
		s.fail(CodeBadMedia, "media data must carry sdp, candidate, subscribe, maxBitrate or unmute")
	}
}

// offer answers a member offer. Without the publish grant its sending
// sections are answered inactive (receiving and data go on) and the member
// is told why.
func (s *Session) offer(p *sfu.Participant, offer string) {
	refused := 0
	if !s.grants.Publish {
		var err error
		if offer, refused, err = sfu.WithoutSending(offer); err != nil {
			s.fail(CodeBadSDP, err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := p.HandleOffer(ctx, offer)
	switch {
	case err != nil && refused > 0 && errors.Is(err, sfu.ErrBadOffer):
		// The offer parsed: it had nothing left once its sending went.
		s.fail(CodeForbidden, "sending media needs the publish grant, and the offer has nothing else")
		return
	case err != nil:
		s.fail(codeOf(err), err.Error())
		return
	}
	s.sendSDP(webrtc.SDPTypeAnswer, answer)
	if refused > 0 {
		s.fail(CodeForbidden, fmt.Sprintf("sending media needs the publish grant: %d sending section(s) answered inactive", refused))
	}
	s.mu.Lock()
	first := !s.answered && s.p == p
	s.answered = s.answered || first
	s.mu.Unlock()
	if first {
		p.OnLocalOffer(func(sdp string) { s.sendSDP(webrtc.SDPTypeOffer, sdp) })
		if s.grants.Subscribe {
			p.Renegotiate() // others' tracks waiting since the join
		}
	}
}

// unmute releases one of the member's own tracks held by a moderator.
func (s *Session) unmute(track string) {
	r, ok := s.b.sfu.LookupRoom(sfu.Calls, s.name)
	if !ok || !ownTrack(r, s.id, track) {
		s.fail(CodeNoSuchTrack, "you publish no track "+track)
		return
	}
	if _, err := r.HoldTrack(track, false); err != nil {
		s.fail(CodeNoSuchTrack, err.Error())
	}
}

func ownTrack(r *sfu.Room, member, track string) bool {
	for _, t := range r.Tracks() {
		if t.ID == track && t.Publisher == member {
			return true
		}
	}
	return false
}

// Mute holds tracks member publishes in the session's room (a
// moderator's mute): track is a track ID from the "tracks" list, or
// "audio" or "video" for all of the member's tracks of that kind ("" is
// "audio"). It returns the "muted" messages to tell the member, one per
// track held; none when it publishes no such track (yet).
func (s *Session) Mute(member, track string) []protocol.Message {
	if track == "" {
		track = "audio"
	}
	r, ok := s.b.sfu.LookupRoom(sfu.Calls, s.name)
	if !ok {
		return nil
	}
	var out []protocol.Message
	for _, t := range r.Tracks() {
		if t.Publisher != member || (t.ID != track && t.Kind != track) {
			continue
		}
		if _, err := r.HoldTrack(t.ID, true); err == nil {
			out = append(out, protocol.Message{Type: protocol.TypeMuted, Track: t.ID, Kind: t.Kind})
		}
	}
	return out
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
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	p, r := s.p, s.room
	s.mu.Unlock()
	if p != nil {
		p.Close()
	}
	s.b.unwatch(r, s)
}

// roomWatch announces one room's tracks and speaker to its sessions; its
// goroutine lives while the room has sessions.
type roomWatch struct {
	sessions map[*Session]struct{}
	cancel   context.CancelFunc
}

func (b *Bridge) watch(s *Session, r *sfu.Room) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.rooms[r]
	if w == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w = &roomWatch{sessions: map[*Session]struct{}{}, cancel: cancel}
		b.rooms[r] = w
		r.OnActiveSpeaker(func(id string) { b.broadcast(r, protocol.Message{Type: protocol.TypeSpeaker, ID: id}) })
		go b.announceTracks(ctx, r)
	}
	w.sessions[s] = struct{}{}
	greet(s, r)
}

// greet tells a newcomer the current track list at once, and who speaks
// (it is only re-sent on a change).
func greet(s *Session, r *sfu.Room) {
	s.send(tracksMessage(r))
	if id := r.ActiveSpeaker(); id != "" {
		s.send(protocol.Message{Type: protocol.TypeSpeaker, ID: id})
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
