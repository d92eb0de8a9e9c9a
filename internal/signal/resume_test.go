package signal_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// cutter dials like the default transport and remembers the connections,
// so a test can break them the way a network does: no close frame, no
// DELETE, the socket just goes.
type cutter struct {
	mu    sync.Mutex
	conns []net.Conn
	down  bool // after cut: no new connections either (no transparent retries)
}

func (c *cutter) client() *http.Client {
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.down {
			return nil, errors.New("the network is down")
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil {
			c.conns = append(c.conns, conn)
		}
		return conn, err
	}}}
}

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// waitUntil polls cond until it holds, failing the test after a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// resumeOpts gives the hub a grace long enough for any test and, for the
// HTTP transport, a short idle time: an HTTP session nobody polls is how
// a long-poll client's drop looks to the server.
func resumeOpts(grace time.Duration) signal.Options {
	return signal.Options{ResumeGrace: grace, SessionIdle: 200 * time.Millisecond}
}

// dialCut dials with a cutter and joins room.
func dialCut(t *testing.T, url, tr, room, name string) (*client.Client, *cutter, *protocol.Message) {
	t.Helper()
	cut := &cutter{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, &client.Options{Transport: tr, HTTPClient: cut.client()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, cut, join(t, c, room, name)
}

// pair puts alice (whose connections the cutter can break) and bob in room.
func pair(t *testing.T, url, tr, room string) (a *client.Client, cut *cutter, ja *protocol.Message, b *client.Client, jb *protocol.Message) {
	t.Helper()
	a, cut, ja = dialCut(t, url, tr, room, "alice")
	b = dial(t, url, tr)
	jb = join(t, b, room, "bob")
	next(t, a, protocol.TypePeerJoined)
	return a, cut, ja, b, jb
}

func resume(t *testing.T, url, tr, token string) (*client.Client, *protocol.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, m, err := client.Resume(ctx, url, token, &client.Options{Transport: tr})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, m, err
}

func signalText(t *testing.T, c *client.Client, to, text string) {
	t.Helper()
	if err := c.Signal(context.Background(), to, text); err != nil {
		t.Fatal(err)
	}
}

// untilSignal reads c's events up to the signal carrying text, failing on
// any peer-left or peer-joined before it.
func untilSignal(t *testing.T, c *client.Client, text string) protocol.Message {
	t.Helper()
	want, _ := json.Marshal(text)
	for {
		select {
		case m, ok := <-c.Events():
			if !ok {
				t.Fatalf("session ended waiting for %s: %v", text, c.Err())
			}
			switch {
			case m.Type == protocol.TypePeerLeft || m.Type == protocol.TypePeerJoined:
				t.Fatalf("saw %s %s before %q", m.Type, m.ID, text)
			case m.Type == protocol.TypeSignal && string(m.Data) == string(want):
				return m
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for %q", text)
		}
	}
}

func refused(t *testing.T, err error) {
	t.Helper()
	var je *client.JoinError
	if !errors.As(err, &je) || je.Code != protocol.CodeResumeFailed {
		t.Fatalf("resume: %v, want %s", err, protocol.CodeResumeFailed)
	}
}

// A's connection breaks; B sends to A in the gap; A resumes: same member,
// the gap's message delivered, B sees no leave or join; the old token is
// refused afterwards.
func TestResumeAfterDrop(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			h, url := newHub(t, resumeOpts(time.Minute))
			a, cut, ja, b, jb := pair(t, url, tr, "resume")
			token := a.ResumeToken()
			if len(token) != 32 {
				t.Fatalf("resume token %q: want 128 bits in hex", token)
			}
			cut.cut()
			<-a.Done()
			waitUntil(t, "the server holds alice for a resume", func() bool { return h.Detached() == 1 })
			signalText(t, b, ja.ID, "in the gap")

			a2, rm, err := resume(t, url, tr, token)
			if err != nil {
				t.Fatal(err)
			}
			if rm.ID != ja.ID || rm.Room != "resume" || rm.Resume == "" || rm.Resume == token {
				t.Fatalf("resumed: %+v", rm)
			}
			if m := untilSignal(t, a2, "in the gap"); m.From != jb.ID {
				t.Fatalf("gap message from %s", m.From)
			}
			signalText(t, a2, jb.ID, "marker")
			if m := untilSignal(t, b, "marker"); m.From != ja.ID {
				t.Fatalf("marker from %s, want alice's unchanged id %s", m.From, ja.ID)
			}
			if h.Detached() != 0 {
				t.Fatal("still detached after the resume")
			}
			_, _, err = resume(t, url, tr, token)
			refused(t, err)
		})
	}
}

// A resume while the old connection still looks alive (a network change
// leaves a half-open one) takes the member from it.
func TestResumeTakesOverLiveConnection(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			_, url := newHub(t, resumeOpts(time.Minute))
			a, _, ja, b, jb := pair(t, url, tr, "takeover")
			a2, rm, err := resume(t, url, tr, a.ResumeToken())
			if err != nil {
				t.Fatal(err)
			}
			if rm.ID != ja.ID {
				t.Fatalf("resumed as %s, want %s", rm.ID, ja.ID)
			}
			<-a.Done() // the old connection was let go
			signalText(t, a2, jb.ID, "marker")
			untilSignal(t, b, "marker")
			signalText(t, b, ja.ID, "back")
			untilSignal(t, a2, "back")
		})
	}
}

// When nobody resumes within the grace, the member leaves as before, and
// its token is refused.
func TestResumeGraceRunsOut(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			_, url := newHub(t, resumeOpts(100*time.Millisecond))
			a, cut, ja, b, _ := pair(t, url, tr, "expire")
			token := a.ResumeToken()
			cut.cut()
			if m := next(t, b, protocol.TypePeerLeft); m.ID != ja.ID {
				t.Fatalf("peer-left %s, want %s", m.ID, ja.ID)
			}
			_, _, err := resume(t, url, tr, token)
			refused(t, err)
		})
	}
}

// A client that closes its connection properly has left: no grace.
func TestCleanCloseLeavesAtOnce(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			_, url := newHub(t, signal.Options{ResumeGrace: time.Hour})
			a := dial(t, url, tr)
			ja := join(t, a, "clean", "alice")
			b := dial(t, url, tr)
			join(t, b, "clean", "bob")
			token := a.ResumeToken()
			a.Close()
			if m := next(t, b, protocol.TypePeerLeft); m.ID != ja.ID {
				t.Fatalf("peer-left %s", m.ID)
			}
			_, _, err := resume(t, url, tr, token)
			refused(t, err)
		})
	}
}

// Messages queued for a detached member are bounded: past the outbox the
// member is dropped as a slow consumer would be, and the others see it go.
func TestResumeQueueBounded(t *testing.T) {
	_, url := newHub(t, signal.Options{ResumeGrace: time.Hour, Outbox: 8, RateBurst: 1000, RateLimit: 1000})
	a, cut, ja, b, _ := pair(t, url, client.WebSocket, "bounded")
	token := a.ResumeToken()
	cut.cut()
	<-a.Done()
	for i := 0; i < 9; i++ {
		signalText(t, b, ja.ID, "flood")
	}
	// Until the server notices the drop the writer takes messages off the
	// queue; keep sending until alice is gone.
	deadline := time.After(5 * time.Second)
	for left := false; !left; {
		select {
		case m := <-b.Events():
			left = m.Type == protocol.TypePeerLeft && m.ID == ja.ID
		case <-time.After(10 * time.Millisecond):
			signalText(t, b, ja.ID, "flood")
		case <-deadline:
			t.Fatal("alice was never dropped")
		}
	}
	_, _, err := resume(t, url, client.WebSocket, token)
	refused(t, err)
}

func TestResumeUnknownToken(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			_, url := newHub(t, signal.Options{})
			_, _, err := resume(t, url, tr, "00000000000000000000000000000000")
			refused(t, err)
		})
	}
}
