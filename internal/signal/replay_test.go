package signal_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/pkg/protocol"
)

// rawWS is a WebSocket client that counts what it gets, as a client
// library does, and can fail to get something (a dead socket).
type rawWS struct {
	t *testing.T
	c *websocket.Conn
}

func dialRaw(t *testing.T, url string) *rawWS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &rawWS{t: t, c: c}
}

func (r *rawWS) send(m any) {
	r.t.Helper()
	b, _ := json.Marshal(m)
	if err := r.c.Write(context.Background(), websocket.MessageText, b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawWS) read() protocol.Message {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := r.c.Read(ctx)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	var m protocol.Message
	if err := json.Unmarshal(b, &m); err != nil {
		r.t.Fatal(err)
	}
	return m
}

// signals reads n signals and returns their texts.
func (r *rawWS) signals(n int) []string {
	r.t.Helper()
	var out []string
	for len(out) < n {
		m := r.read()
		if m.Type != protocol.TypeSignal {
			r.t.Fatalf("got %s %s, want a signal", m.Type, m.Code)
		}
		var s string
		_ = json.Unmarshal(m.Data, &s)
		out = append(out, s)
	}
	return out
}

// lostInDeadSocket: alice got "1" and "2" from bob; the server wrote "3",
// "4" and "5" into her connection, which was dead (her client never got
// them); she sent a message the server never got either. Her resume says
// what she got; the server sends what she did not, once and in order, and
// says what it got from her, so she sends the rest again.
func lostInDeadSocket(t *testing.T, o signal.Options, counts bool) (resumed protocol.Message, after *rawWS, bob func(string)) {
	t.Helper()
	_, url := newHub(t, o)
	a := dialRaw(t, url)
	got := int64(0) // what alice's client counts, as the browser library does
	jm := protocol.Message{Type: protocol.TypeJoin, Room: "lossless", Name: "alice"}
	if counts {
		jm.Got = &got // she says she counts
	}
	a.send(jm)
	j := a.read()
	got++
	b := dial(t, url, "ws")
	jb := join(t, b, "lossless", "bob")
	if m := a.read(); m.Type != protocol.TypePeerJoined {
		t.Fatalf("got %s, want peer-joined", m.Type)
	}
	got++
	bob = func(text string) { signalText(t, b, j.ID, text) }
	for _, s := range []string{"1", "2"} {
		bob(s)
	}
	a.signals(2)
	got += 2
	a.send(protocol.Message{Type: protocol.TypeSignal, To: jb.ID, Data: json.RawMessage(`"from alice"`)})
	untilSignal(t, b, "from alice")
	// Written by the server, never seen by alice's client; then the
	// connection dies without a close frame.
	for _, s := range []string{"3", "4", "5"} {
		bob(s)
	}
	a.signals(3)
	a.c.CloseNow()
	after = dialRaw(t, url)
	after.send(protocol.Message{Type: protocol.TypeResume, Resume: j.Resume, Got: &got})
	return after.read(), after, bob
}

func TestResumeReplaysWhatTheDeadSocketLost(t *testing.T) {
	resumed, a, bob := lostInDeadSocket(t, signal.Options{}, true)
	if resumed.Type != protocol.TypeResumed {
		t.Fatalf("got %s %s %s, want resumed", resumed.Type, resumed.Code, resumed.Message)
	}
	// Alice sent join and one signal; a third would be sent again.
	if resumed.Got == nil || *resumed.Got != 2 {
		t.Fatalf("resumed says the server got %v of alice's messages, want 2", resumed.Got)
	}
	bob("6")
	if got := strings.Join(a.signals(4), " "); got != "3 4 5 6" {
		t.Fatalf("after the resume alice got %q, want \"3 4 5 6\" (each once, in order)", got)
	}
}

// More was lost than the server keeps: the resume is refused and the
// client joins afresh.
func TestResumeBeyondReplayRefused(t *testing.T) {
	resumed, _, _ := lostInDeadSocket(t, signal.Options{Replay: 2}, true)
	if resumed.Type != protocol.TypeError || resumed.Code != protocol.CodeResumeFailed {
		t.Fatalf("got %s %s, want the resume refused", resumed.Type, resumed.Code)
	}
}

// A client that never said it counts (no got in its join or pings: the
// Go client, the load tools) has nothing kept for it: a resume saying it
// lost something is refused.
func TestNothingKeptForClientsThatDoNotCount(t *testing.T) {
	resumed, _, _ := lostInDeadSocket(t, signal.Options{}, false)
	if resumed.Type != protocol.TypeError || resumed.Code != protocol.CodeResumeFailed {
		t.Fatalf("got %s %s, want the resume refused", resumed.Type, resumed.Code)
	}
}

// A pong says how many messages the server got from the client (a ping
// says how many the client got, so the server may forget them), and a
// resume that lost nothing gets nothing again.
func TestPingAcknowledges(t *testing.T) {
	_, url := newHub(t, signal.Options{Replay: 2})
	a := dialRaw(t, url)
	zero := int64(0)
	a.send(protocol.Message{Type: protocol.TypeJoin, Room: "acks", Name: "alice", Got: &zero})
	j := a.read()
	b := dial(t, url, "ws")
	join(t, b, "acks", "bob")
	a.read() // peer-joined
	got := int64(2)
	a.send(protocol.Message{Type: protocol.TypePing, Got: &got})
	if m := a.read(); m.Type != protocol.TypePong || m.Got == nil || *m.Got != 2 {
		t.Fatalf("got %+v, want a pong saying 2", m)
	}
	got++ // the pong
	signalText(t, b, j.ID, "x")
	a.signals(1)
	got++
	// Two kept at most: the pong and "x", which alice has.
	a.c.CloseNow()
	after := dialRaw(t, url)
	after.send(protocol.Message{Type: protocol.TypeResume, Resume: j.Resume, Got: &got})
	if m := after.read(); m.Type != protocol.TypeResumed {
		t.Fatalf("got %s %s, want resumed", m.Type, m.Code)
	}
	signalText(t, b, j.ID, "y")
	if s := after.signals(1); s[0] != "y" {
		t.Fatalf("got %q after the resume, want y", s)
	}
}
