package sfusignal

import (
	"encoding/json"
	"log/slog"
	"sync"
	"testing"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/protocol"
)

// recorder keeps what a session sends its member.
type recorder struct {
	mu  sync.Mutex
	out []protocol.Message
}

func (r *recorder) send(m protocol.Message) {
	r.mu.Lock()
	r.out = append(r.out, m)
	r.mu.Unlock()
}

// take returns and forgets the media messages carrying an error or SDP
// (candidates trickle in on their own).
func (r *recorder) take() (errs []string, sdps int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.out {
		if m.Type != protocol.TypeMedia {
			continue
		}
		var d mediaData
		if json.Unmarshal(m.Data, &d) != nil {
			continue
		}
		if d.Error != nil {
			errs = append(errs, d.Error.Code)
		}
		if d.SDP != nil {
			sdps++
		}
	}
	r.out = nil
	return errs, sdps
}

func newSession(t testing.TB, g auth.Grants) (*Session, *recorder) {
	t.Helper()
	s, err := sfu.New(sfu.Config{UDP: "127.0.0.1:0", TCP: "off", PublicIP: "127.0.0.1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rec := &recorder{}
	ms, err := New(s, nil).Join("fuzz", "member", g, rec.send)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ms.Close)
	return ms, rec
}

// silent reports whether raw is a media message that gets no answer when
// it is right: a candidate, a bitrate budget.
func silent(raw []byte) bool {
	var d mediaData
	if json.Unmarshal(raw, &d) != nil || d.SDP != nil {
		return false
	}
	return d.Candidate != nil || (d.MaxBitrate != nil && d.Subscribe == nil && d.Unmute == nil)
}

// FuzzHandle feeds arbitrary "media" data to a member's session: it never
// panics, every message is answered (an error, or an SDP for an offer)
// unless it is one that needs no answer, and the session stays usable.
func FuzzHandle(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `null`, `{"sdp":null}`, `{"sdp":{"type":"offer","sdp":"v=0"}}`,
		`{"sdp":{"type":"answer","sdp":""}}`, `{"sdp":{"type":"pranswer"}}`, `{"sdp":{"type":"offer","deflate":"!!"}}`,
		`{"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}}`, `{"candidate":{}}`,
		`{"subscribe":{"track":"x","quality":"ultra"}}`, `{"subscribe":{"track":"x"}}`, `{"maxBitrate":-1}`,
		`{"maxBitrate":800000}`, `{"unmute":{"track":"member/a"}}`, `{"unmute":{}}`, `{"error":{"code":"x"}}`,
		"{\"sdp\":{\"type\":\"offer\",\"sdp\":\"v=0\\r\\no=- 1 1 IN IP4 0.0.0.0\\r\\ns=-\\r\\nt=0 0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\na=rtpmap:111 opus/48000/2\\r\\na=sendonly\\r\\n\"}}",
	} {
		f.Add([]byte(seed))
	}
	ms, rec := newSession(f, auth.Grants{Subscribe: true})
	probe := json.RawMessage(`{"subscribe":{"track":"none","quality":"ultra"}}`)
	f.Fuzz(func(t *testing.T, raw []byte) {
		ms.Handle(raw)
		errs, sdps := rec.take()
		if len(errs) == 0 && sdps == 0 && !silent(raw) {
			t.Fatalf("%q got no answer", raw)
		}
		ms.Handle(probe) // still usable: a bad preference gets its error
		if errs, _ := rec.take(); len(errs) != 1 || (errs[0] != CodeBadMedia && errs[0] != CodeMediaClosed) {
			t.Fatalf("after %q the session answers a bad preference with %v", raw, errs)
		}
	})
}
