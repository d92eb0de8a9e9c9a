package signal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/origin"
	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

func newHub(t testing.TB, o signal.Options) (*signal.Hub, string) {
	t.Helper()
	if o.Capacity == nil {
		o.Capacity = func(string, string) int { return 4 }
	}
	h := signal.NewHub(o)
	url, stop := serveHub(h)
	t.Cleanup(stop)
	return h, url
}

func serveHub(h *signal.Hub) (string, func()) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", h.ServeWS)
	mux.Handle("/api/session", h)
	mux.Handle("/api/session/", h)
	srv := httptest.NewServer(mux)
	return srv.URL, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		h.Close(ctx)
		srv.Close()
	}
}

func mustDial(tb testing.TB, url string) *client.Client {
	c, err := client.Dial(context.Background(), url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func dial(t testing.TB, url, transport string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, &client.Options{Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func join(t testing.TB, c *client.Client, room, name string) *protocol.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	j, err := c.Join(ctx, room, name, "")
	if err != nil {
		t.Fatalf("%s join %s: %v", name, room, err)
	}
	return j
}

// next waits for the next event of the given type, skipping none.
func next(t *testing.T, c *client.Client, typ string) protocol.Message {
	t.Helper()
	select {
	case m, ok := <-c.Events():
		if !ok {
			t.Fatalf("session ended waiting for %s: %v", typ, c.Err())
		}
		if m.Type != typ {
			t.Fatalf("got %s (%s %s), want %s", m.Type, m.Code, m.Message, typ)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", typ)
	}
	return protocol.Message{}
}

func expectError(t *testing.T, c *client.Client, code string) {
	t.Helper()
	if m := next(t, c, protocol.TypeError); m.Code != code {
		t.Fatalf("error code %q (%s), want %q", m.Code, m.Message, code)
	}
}

var transports = []string{client.WebSocket, client.HTTP}

func TestJoinSignalLeave(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			_, url := newHub(t, signal.Options{})
			a, b := dial(t, url, tr), dial(t, url, tr)
			ja := join(t, a, "room-1", "alice")
			if len(ja.Peers) != 0 || ja.ID == "" || ja.Mode != "p2p" {
				t.Fatalf("first joined: %+v", ja)
			}
			jb := join(t, b, "room-1", "bob")
			if len(jb.Peers) != 1 || jb.Peers[0].ID != ja.ID || jb.Peers[0].Name != "alice" {
				t.Fatalf("second joined peers: %+v", jb.Peers)
			}
			if m := next(t, a, protocol.TypePeerJoined); m.ID != jb.ID || m.Name != "bob" {
				t.Fatalf("peer-joined: %+v", m)
			}
			ctx := context.Background()
			if err := b.Signal(ctx, ja.ID, map[string]string{"sdp": "offer"}); err != nil {
				t.Fatal(err)
			}
			if m := next(t, a, protocol.TypeSignal); m.From != jb.ID || string(m.Data) != `{"sdp":"offer"}` {
				t.Fatalf("signal: %+v %s", m, m.Data)
			}
			b.Leave(ctx)
			if m := next(t, b, protocol.TypeLeft); m.Room != "room-1" {
				t.Fatalf("left: %+v", m)
			}
			if m := next(t, a, protocol.TypePeerLeft); m.ID != jb.ID {
				t.Fatalf("peer-left: %+v", m)
			}
		})
	}
}

func TestCrossTransport(t *testing.T) {
	_, url := newHub(t, signal.Options{})
	ws, hp := dial(t, url, client.WebSocket), dial(t, url, client.HTTP)
	jw := join(t, ws, "mixed", "ws")
	jh := join(t, hp, "mixed", "http")
	next(t, ws, protocol.TypePeerJoined)
	hp.Signal(context.Background(), jw.ID, "hello")
	if m := next(t, ws, protocol.TypeSignal); string(m.Data) != `"hello"` {
		t.Fatalf("%s", m.Data)
	}
	ws.Signal(context.Background(), jh.ID, 42)
	if m := next(t, hp, protocol.TypeSignal); string(m.Data) != `42` {
		t.Fatalf("%s", m.Data)
	}
}

func TestRoomFull(t *testing.T) {
	_, url := newHub(t, signal.Options{Capacity: func(string, string) int { return 2 }})
	a, b, c := dial(t, url, ""), dial(t, url, ""), dial(t, url, "")
	join(t, a, "small", "a")
	join(t, b, "small", "b")
	ctx := context.Background()
	_, err := c.Join(ctx, "small", "c", "")
	var je *client.JoinError
	if !errors.As(err, &je) || !je.Full {
		t.Fatalf("third join: %v", err)
	}
	next(t, a, protocol.TypePeerJoined) // b only; c never appears
	b.Leave(ctx)
	next(t, a, protocol.TypePeerLeft)
	join(t, c, "small", "c") // there is room now
}

func TestSignalOrder(t *testing.T) {
	_, url := newHub(t, signal.Options{RateLimit: 1e6, RateBurst: 1e6, Outbox: 2048})
	a, b := dial(t, url, ""), dial(t, url, "")
	join(t, a, "order", "a")
	jb := join(t, b, "order", "b")
	next(t, a, protocol.TypePeerJoined)
	const n = 1000
	go func() {
		for i := 0; i < n; i++ {
			a.Signal(context.Background(), jb.ID, i)
		}
	}()
	for i := 0; i < n; i++ {
		m := next(t, b, protocol.TypeSignal)
		if string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d arrived as %s", i, m.Data)
		}
	}
}

// joinWithoutReading joins room over a raw WebSocket that is never read
// again, like a client whose process hangs.
func joinWithoutReading(t *testing.T, url, room string) {
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"`+room+`","name":"silent"}`))
}

func TestDeadConnectionNoticed(t *testing.T) {
	_, url := newHub(t, signal.Options{PingInterval: 100 * time.Millisecond, ResumeGrace: -1})
	a := dial(t, url, "")
	join(t, a, "dead", "a")
	// A raw WebSocket that joins and then never reads: it cannot answer pings.
	joinWithoutReading(t, url, "dead")
	next(t, a, protocol.TypePeerJoined)
	start := time.Now()
	next(t, a, protocol.TypePeerLeft)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("dead peer noticed after %v", d)
	}
}

func TestBadInputKeepsConnection(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			_, url := newHub(t, signal.Options{})
			c := dial(t, url, tr)
			ctx := context.Background()
			cases := []struct{ in, code string }{
				{`not json`, protocol.CodeBadJSON},
				{`{"type":`, protocol.CodeBadJSON},
				{`{"type":"dance"}`, protocol.CodeUnknownType},
				{`{"room":"x"}`, protocol.CodeMissingField},
				{`{"type":"join"}`, protocol.CodeMissingField},
				{`{"type":"join","room":"bad room!"}`, protocol.CodeInvalidRoom},
				{`{"type":"join","room":["x"]}`, protocol.CodeBadField},
				{`{"type":"signal","to":"x","data":1}`, protocol.CodeNotInRoom},
				{`{"type":"leave"}`, protocol.CodeNotInRoom},
			}
			for _, tc := range cases {
				c.SendRaw(ctx, []byte(tc.in))
				expectError(t, c, tc.code)
			}
			join(t, c, "ok", "me")
			for _, tc := range []struct{ in, code string }{
				{`{"type":"signal","to":"nobody","data":1}`, protocol.CodeNoSuchPeer},
				{`{"type":"signal","to":"nobody"}`, protocol.CodeMissingField},
				{`{"type":"join","room":"again"}`, protocol.CodeAlreadyJoined},
			} {
				c.SendRaw(ctx, []byte(tc.in))
				expectError(t, c, tc.code)
			}
			c.SendRaw(ctx, []byte(`{"type":"ping"}`))
			next(t, c, protocol.TypePong)
		})
	}
}

func TestOversizedMessage(t *testing.T) {
	_, url := newHub(t, signal.Options{MaxMessage: 1024})
	a, b := dial(t, url, ""), dial(t, url, "")
	join(t, a, "big", "a")
	jb := join(t, b, "big", "b")
	next(t, a, protocol.TypePeerJoined)
	ctx := context.Background()
	big := fmt.Sprintf(`{"type":"signal","to":%q,"data":"%s"}`, jb.ID, strings.Repeat("x", 2000))
	a.SendRaw(ctx, []byte(big))
	expectError(t, a, protocol.CodeTooLarge)
	a.Signal(ctx, jb.ID, "small") // still connected, still relaying
	if m := next(t, b, protocol.TypeSignal); string(m.Data) != `"small"` {
		t.Fatalf("%s", m.Data)
	}
	// Far over the limit: closed with 1009, b is unaffected.
	a.SendRaw(ctx, []byte(strings.Repeat("y", 10000)))
	<-a.Done()
	if websocket.CloseStatus(a.Err()) != websocket.StatusMessageTooBig {
		t.Fatalf("close: %v", a.Err())
	}
	next(t, b, protocol.TypePeerLeft)

	// Over HTTP the same limit answers 413.
	resp, err := http.Post(url+"/api/session", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var s struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	resp, err = http.Post(url+"/api/session/"+s.ID, "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("HTTP oversized: %s", resp.Status)
	}
}

func TestFloodIsCutOff(t *testing.T) {
	_, url := newHub(t, signal.Options{RateLimit: 10, RateBurst: 20})
	a, b := dial(t, url, ""), dial(t, url, "")
	join(t, a, "flood", "a")
	join(t, b, "flood", "b")
	next(t, a, protocol.TypePeerJoined)
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		if b.SendRaw(ctx, []byte(`{"type":"ping"}`)) != nil {
			break
		}
	}
	sawLimit := false
	for m := range b.Events() {
		if m.Type == protocol.TypeError && m.Code == protocol.CodeRateLimited {
			sawLimit = true
		}
	}
	if !sawLimit || websocket.CloseStatus(b.Err()) != websocket.StatusPolicyViolation {
		t.Fatalf("flood: saw error %v, close %v", sawLimit, b.Err())
	}
	next(t, a, protocol.TypePeerLeft) // a is fine and is told
	a.SendRaw(ctx, []byte(`{"type":"ping"}`))
	next(t, a, protocol.TypePong)
}

func TestSlowConsumerDisconnected(t *testing.T) {
	_, url := newHub(t, signal.Options{Outbox: 8, RateLimit: 1e6, RateBurst: 1e6, ByteRate: 1 << 30, ByteBurst: 1 << 30})
	a := dial(t, url, "")
	join(t, a, "slow", "a")
	ctx := context.Background()
	// b never reads: its TCP buffers and then its outbox fill up.
	joinWithoutReading(t, url, "slow")
	bID := next(t, a, protocol.TypePeerJoined).ID
	payload := strings.Repeat("z", 30000)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		a.Signal(ctx, bID, payload)
		select {
		case m := <-a.Events():
			if m.Type == protocol.TypePeerLeft && m.ID == bID {
				return // cut off; a kept working throughout
			}
			if m.Type == protocol.TypeError && m.Code != protocol.CodeNoSuchPeer {
				t.Fatalf("a got %+v", m)
			}
		default:
		}
	}
	t.Fatal("slow consumer was never cut off")
}

func TestTokens(t *testing.T) {
	secret := []byte("signal-test-secret-of-32-bytes!!")
	v, err := auth.NewVerifier(auth.Keys{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	_, url := newHub(t, signal.Options{Auth: v})
	now := time.Now()
	good, _ := auth.NewToken(secret, "team-*", "alice", auth.AllGrants, time.Hour, now)
	expired, _ := auth.NewToken(secret, "team-*", "alice", auth.AllGrants, time.Hour, now.Add(-2*time.Hour))
	forged, _ := auth.NewToken([]byte("another-secret-of-32-bytes-long!"), "team-*", "alice", auth.AllGrants, time.Hour, now)
	ctx := context.Background()
	cases := []struct{ room, token, code string }{
		{"team-a", "", protocol.CodeUnauthorized},
		{"team-a", expired, protocol.CodeUnauthorized},
		{"team-a", forged, protocol.CodeUnauthorized},
		{"other", good, protocol.CodeForbidden},
	}
	c := dial(t, url, "")
	for _, tc := range cases {
		_, err := c.Join(ctx, tc.room, "", tc.token)
		var je *client.JoinError
		if !errors.As(err, &je) || je.Code != tc.code {
			t.Errorf("room %s: %v, want %s", tc.room, err, tc.code)
		}
	}
	j, err := c.Join(ctx, "team-a", "", good)
	if err != nil || j.Name != "alice" {
		t.Fatalf("good token: %v %+v", err, j)
	}
}

func TestHTTPSessionReaped(t *testing.T) {
	_, url := newHub(t, signal.Options{SessionIdle: 200 * time.Millisecond, ResumeGrace: -1})
	a := dial(t, url, "")
	join(t, a, "idle", "a")
	resp, err := http.Post(url+"/api/session", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var s struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	resp, _ = http.Post(url+"/api/session/"+s.ID, "application/json", strings.NewReader(`{"type":"join","room":"idle"}`))
	resp.Body.Close()
	next(t, a, protocol.TypePeerJoined)
	next(t, a, protocol.TypePeerLeft) // nobody polled: reaped
	resp, _ = http.Get(url + "/api/session/" + s.ID + "/events")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("reaped session answers %s", resp.Status)
	}
}

func TestShutdownSendsCloseFrame(t *testing.T) {
	h, url := newHub(t, signal.Options{})
	a := dial(t, url, "")
	join(t, a, "bye", "a")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h.Close(ctx)
	var last protocol.Message
	for m := range a.Events() {
		last = m
	}
	if last.Code != protocol.CodeShuttingDown || websocket.CloseStatus(a.Err()) != websocket.StatusGoingAway {
		t.Fatalf("last %+v, close %v", last, a.Err())
	}
}

// A graceful shutdown tells every member, over both transports, that the
// server is going away and when to come back (server-shutdown, then the
// shutting-down error), and nobody is told the others left: they all
// come back after the restart.
func TestShutdownSaysGoodbye(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			h, url := newHub(t, signal.Options{})
			a, b := dial(t, url, tr), dial(t, url, tr)
			join(t, a, "bye", "a")
			join(t, b, "bye", "b")
			next(t, a, protocol.TypePeerJoined)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			h.Close(ctx)
			for _, c := range []*client.Client{a, b} {
				var got []string
				for m := range c.Events() {
					got = append(got, m.Type+" "+m.Code)
					if m.Type == protocol.TypeServerShutdown && m.RetryMs <= 0 {
						t.Errorf("server-shutdown without retryMs: %+v", m)
					}
				}
				if want := []string{"server-shutdown ", "error shutting-down"}; !slices.Equal(got, want) {
					t.Errorf("a member got %q, want %q", got, want)
				}
			}
		})
	}
}

func TestCrossOriginNeedsAllowOrigins(t *testing.T) {
	_, url := newHub(t, signal.Options{Origins: origin.New(nil, []string{"app.example.org"})})
	ctx := context.Background()
	wsURL := "ws" + strings.TrimPrefix(url, "http") + "/ws"
	for origin, ok := range map[string]bool{"https://app.example.org": true, "https://evil.example.com": false, "http://127.0.0.1:1": true} {
		c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}})
		if (err == nil) != ok {
			t.Errorf("WebSocket from %s: err %v", origin, err)
		}
		if c != nil {
			c.CloseNow()
		}
		req, _ := http.NewRequest(http.MethodPost, url+"/api/session", nil)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.StatusCode == http.StatusCreated && resp.Header.Get("Access-Control-Allow-Origin") == origin; got != ok {
			t.Errorf("HTTP from %s: %s, CORS %q", origin, resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
}
