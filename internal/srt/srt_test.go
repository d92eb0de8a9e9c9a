package srt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/sfu"
)

// names is a Claimer keeping stream names in a map.
type names struct {
	mu   sync.Mutex
	held map[string]bool
}

type nameClaim struct {
	n      *names
	stream string
}

func (nameClaim) Published(sfu.TrackInfo) {}
func (c nameClaim) Release() {
	c.n.mu.Lock()
	delete(c.n.held, c.stream)
	c.n.mu.Unlock()
}

func (n *names) claim(stream string, _ int) (ingest.Claim, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.held[stream] {
		return nil, fmt.Errorf("%s is busy", stream)
	}
	n.held[stream] = true
	return nameClaim{n, stream}, nil
}

func listen(t *testing.T, cfg Config) *Server {
	t.Helper()
	m, err := sfu.New(sfu.Config{UDP: "127.0.0.1:0", TCP: "off", PublicIP: "127.0.0.1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	cfg.Listen, cfg.SFU, cfg.Claim = "127.0.0.1:0", m, (&names{held: map[string]bool{}}).claim
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dial(s *Server, streamid string) (gosrt.Conn, error) {
	cfg := gosrt.DefaultConfig()
	cfg.StreamId = streamid
	return gosrt.Dial("srt", s.Addr().String(), cfg)
}

// TestLimits: a second session from the address is refused while one is
// open; a publisher that sends no MPEG-TS is closed at the setup deadline,
// which frees its slot and its stream name.
func TestLimits(t *testing.T) {
	s := listen(t, Config{ConnsPerIP: 1, HandshakeTimeout: 300 * time.Millisecond})
	a, err := dial(s, "publish:a")
	if err != nil {
		t.Fatalf("first publisher: %v", err)
	}
	defer a.Close()
	if c, err := dial(s, "publish:b"); err == nil {
		c.Close()
		t.Fatal("a second session from the address was accepted")
	}
	// The server closes the silent publisher: its read ends.
	if _, err := a.Read(make([]byte, 1500)); err == nil {
		t.Fatal("read data from the server")
	}
	tick := time.NewTicker(10 * time.Millisecond) // the slot is freed after the close, with no event to wait on
	defer tick.Stop()
	for deadline := time.After(10 * time.Second); s.Stats().Sessions != 0; {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%d sessions still open", s.Stats().Sessions)
		}
	}
	b, err := dial(s, "publish:a")
	if err != nil {
		t.Fatalf("publisher after the first timed out: %v", err)
	}
	b.Close()
	if st := s.Stats(); st.Refused != 1 || st.Accepted != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestRefusals: the handshake refuses bad streamids, access denied, and
// reading a stream that is not live, and calls end once per allowed session.
func TestRefusals(t *testing.T) {
	var mu sync.Mutex
	var asked []ingest.Request
	ended := make(chan struct{}, 4)
	s := listen(t, Config{HandshakeTimeout: 200 * time.Millisecond, Authorize: func(_ context.Context, r ingest.Request) (func(), error) {
		mu.Lock()
		asked = append(asked, r)
		mu.Unlock()
		if r.Token != "good" {
			return nil, errors.New("bad token")
		}
		return func() { ended <- struct{}{} }, nil
	}})
	for _, id := range []string{"nonsense", "publish:s:bad", "read:s", "read:s:good"} {
		if c, err := dial(s, id); err == nil {
			c.Close()
			t.Errorf("%q accepted", id)
		}
	}
	c, err := dial(s, "#!::r=s,m=publish,t=good")
	if err != nil {
		t.Fatalf("good publisher: %v", err)
	}
	c.Close()
	for range 2 { // read:s:good (not live) and the publisher
		<-ended
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 4 || asked[0].Proto != "srt" || asked[3].Action != ingest.Publish || asked[3].Stream != "s" {
		t.Errorf("asked %+v", asked)
	}
}
