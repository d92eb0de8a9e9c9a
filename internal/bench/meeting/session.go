package meeting

import (
	"context"
	"time"

	"github.com/pion/webrtc/v4"
)

// Sessions makes media sessions for other load tools (the soak): pion
// peers that join an SFU room, publish a synthetic VP8 video and Opus
// audio track and receive everyone else's, exactly as a meeting's
// participants do.
type Sessions struct {
	api   *webrtc.API
	url   string
	rate  int
	epoch time.Time
}

// NewSessions prepares sessions against the server at url (loopback)
// sending video at videoBitrate bits per second (0: 500 kbit/s).
func NewSessions(url string, videoBitrate int) (*Sessions, error) {
	api, err := newAPI()
	if err != nil {
		return nil, err
	}
	if videoBitrate <= 0 {
		videoBitrate = 500_000
	}
	return &Sessions{api: api, url: url, rate: videoBitrate, epoch: time.Now()}, nil
}

// Session is one joined media session; Close ends it.
type Session struct{ p *participant }

// Join connects session idx to room: it returns once the server answered
// its first offer, with its tracks sending.
func (s *Sessions) Join(ctx context.Context, room string, idx int) (*Session, error) {
	p, err := join(ctx, s.api, Options{URL: s.url, Room: room, VideoBitrate: s.rate}, idx, s.epoch)
	if err != nil {
		return nil, err
	}
	return &Session{p: p}, nil
}

// Flowing is how many of the tracks it receives have delivered packets.
func (s *Session) Flowing() int { return s.p.flowing() }

// Close leaves the room and ends the session's goroutines.
func (s *Session) Close() { s.p.close() }
