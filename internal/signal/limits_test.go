package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/clientip"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// seqReader follows one well-behaved member: it reads every event and
// checks that the relayed messages ({"seq": n, ...}) arrive all and in
// order. got delivers each seq as it comes; err ends it early.
type seqReader struct {
	got  chan int
	err  chan error
	last int         // highest seq seen by waitSeq
	at   []time.Time // when each seq arrived; read it after waitSeq saw the last
}

func readSeqs(c *client.Client) *seqReader {
	r := &seqReader{got: make(chan int, 4096), err: make(chan error, 1), last: -1}
	go func() {
		want := 0
		for m := range c.Events() {
			switch m.Type {
			case protocol.TypeSignal:
				var d struct{ Seq int }
				if err := json.Unmarshal(m.Data, &d); err != nil {
					r.err <- err
					return
				}
				if d.Seq != want {
					r.err <- fmt.Errorf("message %d arrived where %d was due", d.Seq, want)
					return
				}
				want++
				r.at = append(r.at, time.Now())
				r.got <- d.Seq
			case protocol.TypeError:
				r.err <- fmt.Errorf("error %s: %s", m.Code, m.Message)
				return
			}
		}
		r.err <- fmt.Errorf("session ended: %v", c.Err())
	}()
	return r
}

// waitSeq waits until the member has received message n.
func (r *seqReader) waitSeq(t testing.TB, who string, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for r.last < n {
		select {
		case r.last = <-r.got:
			if r.last >= n {
				return
			}
		case err := <-r.err:
			t.Fatalf("%s: %v", who, err)
		case <-timeout:
			t.Fatalf("%s: message %d never arrived", who, n)
		}
	}
}

// Row 3 of issue #10: 60 members of a chat room that never read and one
// sender of 60 KB messages to "*" at 50/s (inside the message rate limit).
// The outboxes were bounded in messages only and every receiver had its own
// copy: 1.4 GB in 7 s. Now outboxes are bounded in bytes and the message is
// encoded once and shared, so the heap stays small and the members who
// read get every message, in order.
func TestRow03ChatAmplification(t *testing.T) {
	const (
		silent  = 60
		readers = 10
		msgs    = 100
		size    = 60 << 10
	)
	// A byte rate high enough not to matter here: the outbox bound and the
	// shared encoding must hold the line on their own.
	h, url := newHub(t, signal.Options{ByteRate: 1 << 30, ByteBurst: 1 << 30, RateLimit: 50, RateBurst: 200,
		Capacity: func(string, string) int { return 100 }})
	const room = "chat.stream"
	sender := dial(t, url, "")
	join(t, sender, room, "sender")
	var rs []*seqReader
	for i := 0; i < readers; i++ {
		c := dial(t, url, "")
		join(t, c, room, fmt.Sprint("reader", i))
		rs = append(rs, readSeqs(c))
	}
	for i := 0; i < silent; i++ {
		joinWithoutReading(t, url, room)
	}
	// The last silent member has joined once the sender hears of it.
	for n := 0; n < readers+silent; {
		if m := <-sender.Events(); m.Type == protocol.TypePeerJoined {
			n++
		}
	}
	go func() { // the sender's own events are not the point
		for range sender.Events() {
		}
	}()
	base := heapInUse()
	pad := strings.Repeat("x", size)
	tick := time.NewTicker(time.Second / 50)
	defer tick.Stop()
	var peak uint64
	ctx := context.Background()
	for i := 0; i < msgs; i++ {
		if err := sender.SendRaw(ctx, []byte(fmt.Sprintf(`{"type":"signal","to":"*","data":{"seq":%d,"pad":%q}}`, i, pad))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%10 == 9 {
			// Wait for the readers to have it, then weigh what the server holds.
			for j, r := range rs {
				r.waitSeq(t, fmt.Sprint("reader", j), i)
			}
			h := heapInUse()
			peak = max(peak, h)
			if h > base+50<<20 {
				t.Fatalf("heap grew by %d MB after %d messages of %d KB to %d members", (h-base)>>20, i+1, size>>10, silent+readers)
			}
		}
		<-tick.C
	}
	for j, r := range rs {
		r.waitSeq(t, fmt.Sprint("reader", j), msgs-1)
	}
	t.Logf("heap growth at most %.1f MB", float64(int64(peak)-int64(base))/(1<<20))
	// The silent members' writers are stuck in writes nobody reads; their
	// sessions still end (the connection is cut a while after they fail),
	// so shutting down does not wait on them forever.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h.Close(ctx)
	if ctx.Err() != nil {
		t.Fatal("sessions of members that never read were still there 15 s after shutdown began")
	}
}

// The byte rate limits a sender of big messages that stays inside the
// message rate.
func TestByteRateLimited(t *testing.T) {
	_, url := newHub(t, signal.Options{MaxMessage: 16 << 10, ByteRate: 32 << 10, ByteBurst: 64 << 10})
	a, b := dial(t, url, ""), dial(t, url, "")
	join(t, a, "bytes", "a")
	jb := join(t, b, "bytes", "b")
	next(t, a, protocol.TypePeerJoined)
	ctx := context.Background()
	pad := strings.Repeat("p", 15<<10)
	for i := 0; i < 5; i++ { // 75 KB at once: over the 64 KB burst
		a.Signal(ctx, jb.ID, pad)
	}
	expectError(t, a, protocol.CodeRateLimited)
	for i := 0; i < 4; i++ {
		next(t, b, protocol.TypeSignal)
	}
}

var (
	fromMu      sync.Mutex
	fromClients = map[string]*http.Client{}
)

// from is an HTTP client whose connections come from the loopback
// address ip (127.x.y.z): a distinct client for per-address limits.
func from(ip string) *http.Client {
	fromMu.Lock()
	defer fromMu.Unlock()
	if c := fromClients[ip]; c != nil {
		return c
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}}
	fromClients[ip] = c
	return c
}

func dialFrom(t testing.TB, url, ip, transport string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, &client.Options{Transport: transport, HTTPClient: from(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawFirst opens a raw WebSocket from ip, sends msg (unless empty) and
// returns the first message the server sends, then the connection.
func rawFirst(t *testing.T, url, ip, msg string) (protocol.Message, *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", &websocket.DialOptions{HTTPClient: from(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if msg != "" {
		c.Write(ctx, websocket.MessageText, []byte(msg))
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("first message: %v", err)
	}
	var m protocol.Message
	json.Unmarshal(b, &m)
	return m, c
}

// Row 4 of issue #10: 10,100 WebSocket connections from one client took
// every room and a real user's join was refused with server-full. Now one
// address holds at most ConnsPerIP connections (WebSocket and long-poll
// alike: too-many-connections) and creates at most RoomsPerIP rooms a
// minute (too-many-rooms), so others still get in.
func TestRow04ConnectionsPerIP(t *testing.T) {
	const attempts = 250 // over the default 200 connections per address
	trusted := clientip.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	_, url := newHub(t, signal.Options{Rooms: room.NewManager(100), ClientIP: trusted})
	codes := map[string]int{}
	for i := 0; i < attempts; i++ {
		m, _ := rawFirst(t, url, "127.0.0.1", fmt.Sprintf(`{"type":"join","room":"spam-%d"}`, i))
		if m.Type == protocol.TypeError {
			codes[m.Code]++
		} else {
			codes[m.Type]++
		}
	}
	if codes[protocol.TypeJoined] != 60 || codes[protocol.CodeTooManyRooms] != 140 || codes[protocol.CodeTooManyConnections] != attempts-200 {
		t.Fatalf("one address's %d attempts: %v; want 60 rooms, then too-many-rooms, and too-many-connections past 200", attempts, codes)
	}
	// Long-poll counts against the same slots: 429.
	if st, e := openSession(t, url, ""); st != http.StatusTooManyRequests || e.Code != protocol.CodeTooManyConnections {
		t.Fatalf("long-poll from the same address: %d %+v", st, e)
	}
	// Another address is not affected, over either transport...
	for _, tr := range transports {
		c := dialFrom(t, url, "127.0.0.2", tr)
		join(t, c, "real-"+tr, "real user")
	}
	// ...nor a client behind a trusted proxy, named by X-Forwarded-For.
	if st, _ := openSession(t, url, "198.51.100.7"); st != http.StatusCreated {
		t.Fatalf("client behind the proxy: %d", st)
	}
}

// openSession opens a long-poll session (as forwarded for xff, unless
// empty) and returns the status and the error object, if any.
func openSession(t *testing.T, url, xff string) (int, protocol.Message) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/api/session", nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e protocol.Message
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

// Row 5 of issue #10: 200 WebSocket connections that never join, on a
// server with auth, were all held (one still answered pong after 40 s).
// Now a connection that is in no room JoinTimeout after connecting (or
// after leaving) is closed with join-timeout; one that joined stays.
func TestRow05JoinDeadline(t *testing.T) {
	secret, v := testVerifier(t)
	_, url := newHub(t, signal.Options{Auth: v, JoinTimeout: 300 * time.Millisecond, ConnsPerIP: 1000})
	tok, _ := auth.NewToken(secret, "*", "alice", auth.AllGrants, time.Hour, time.Now())
	good := dial(t, url, "")
	if _, err := good.Join(context.Background(), "kept", "", tok); err != nil {
		t.Fatal(err)
	}
	var conns []*websocket.Conn
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 200; i++ {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		conns = append(conns, c)
	}
	for i, c := range conns {
		_, b, err := c.Read(ctx)
		var m protocol.Message
		json.Unmarshal(b, &m)
		if err != nil || m.Code != protocol.CodeJoinTimeout {
			t.Fatalf("idle connection %d: %s %v", i, b, err)
		}
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("idle connection %d not closed: %v", i, err)
		}
	}
	// Long-poll sessions have the same deadline.
	hp := dial(t, url, client.HTTP)
	select {
	case m := <-hp.Events():
		if m.Code != protocol.CodeJoinTimeout {
			t.Fatalf("long-poll: %+v", m)
		}
	case <-ctx.Done():
		t.Fatal("long-poll session never timed out")
	}
	// The member who joined is still served; leaving re-arms the deadline.
	good.SendRaw(ctx, []byte(`{"type":"ping"}`))
	next(t, good, protocol.TypePong)
	good.Leave(ctx)
	next(t, good, protocol.TypeLeft)
	if m := next(t, good, protocol.TypeError); m.Code != protocol.CodeJoinTimeout {
		t.Fatalf("after leaving: %+v", m)
	}
	<-good.Done()
}

// Row 10 of issue #10: two tokens, sub=alice and sub=carol, joined with
// name "bob" and both were shown as "bob". Now peers see each member's
// verified identity (and the token's name when it carries one), and who
// hosts comes from the grants, not from the client.
func TestRow10VerifiedIdentity(t *testing.T) {
	secret, v := testVerifier(t)
	_, url := newHub(t, signal.Options{Auth: v})
	now := time.Now()
	mint := func(c auth.Claims) string {
		c.Room, c.ExpiresAt = "chat.*", now.Add(time.Hour).Unix()
		tok, err := auth.Mint(secret, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx := context.Background()
	viewer := dial(t, url, "")
	jv, err := viewer.Join(ctx, "chat.show", "bob", mint(auth.Claims{Identity: "alice", Grants: auth.Grants{Subscribe: true}}))
	if err != nil {
		t.Fatal(err)
	}
	if jv.Identity != "alice" || !jv.Verified || jv.Host || jv.Name != "bob" {
		t.Fatalf("alice's joined: %+v", jv)
	}
	// carol's token names her and grants publish: she hosts, whatever she asks.
	host := dial(t, url, "")
	if err := host.Send(ctx, protocol.Message{Type: protocol.TypeJoin, Room: "chat.show", Name: "bob",
		Token: mint(auth.Claims{Identity: "carol", Name: "Carol C.", Grants: auth.Grants{Publish: true}})}); err != nil {
		t.Fatal(err)
	}
	pj := next(t, viewer, protocol.TypePeerJoined)
	if pj.Identity != "carol" || !pj.Verified || pj.Name != "Carol C." || !pj.Host {
		t.Fatalf("alice is told of carol as %+v", pj)
	}
	// A subscriber asking to host does not.
	third := dial(t, url, "")
	if err := third.Send(ctx, protocol.Message{Type: protocol.TypeJoin, Room: "chat.show", Name: "Carol C.", Host: true,
		Token: mint(auth.Claims{Identity: "mallory", Grants: auth.Grants{Subscribe: true}})}); err != nil {
		t.Fatal(err)
	}
	pj = next(t, viewer, protocol.TypePeerJoined)
	if pj.Identity != "mallory" || pj.Host || !pj.Verified {
		t.Fatalf("alice is told of mallory as %+v", pj)
	}
	j := until(t, third, protocol.TypeJoined)
	if len(j.Peers) != 2 || j.Peers[0].Identity != "alice" || j.Peers[1].Identity != "carol" || !j.Peers[1].Host || j.Peers[0].Host {
		t.Fatalf("mallory's peer list: %+v", j.Peers)
	}
}

// On an open server nobody is verified, and the first member present that
// asks to host a room does (the broadcast page asks for its chat room).
func TestOpenServerHost(t *testing.T) {
	_, url := newHub(t, signal.Options{})
	ctx := context.Background()
	joinAs := func(name string, host bool) (*client.Client, protocol.Message) {
		c := dial(t, url, "")
		c.Send(ctx, protocol.Message{Type: protocol.TypeJoin, Room: "chat.open", Name: name, Host: host})
		return c, until(t, c, protocol.TypeJoined)
	}
	a, ja := joinAs("first", true)
	_, jb := joinAs("second", true)
	if !ja.Host || jb.Host || ja.Verified || ja.Identity != "" {
		t.Fatalf("first %+v, second %+v", ja, jb)
	}
	if len(jb.Peers) != 1 || !jb.Peers[0].Host || jb.Peers[0].Verified {
		t.Fatalf("second's peers: %+v", jb.Peers)
	}
	a.Leave(ctx)
	until(t, a, protocol.TypeLeft)
	if _, jc := joinAs("third", true); !jc.Host {
		t.Fatalf("host left, a new claim: %+v", jc)
	}
}

// until waits for the next event of the given type, skipping others.
func until(t *testing.T, c *client.Client, typ string) protocol.Message {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-c.Events():
			if !ok {
				t.Fatalf("session ended waiting for %s: %v", typ, c.Err())
			}
			if m.Type == typ {
				return m
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", typ)
		}
	}
}

// testVerifier is a token verifier with its secret.
func testVerifier(t *testing.T) ([]byte, *auth.Verifier) {
	t.Helper()
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := auth.NewVerifier(auth.Keys{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return secret, v
}

// A member in a room gets fresh ICE servers every ICERefresh, each from a
// new ICEServers call, until it leaves.
func TestICEServersRefreshedWhileInRoom(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	ice := func(host, member string) []protocol.ICEServer {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return []protocol.ICEServer{{URLs: []string{"turn:" + host}, Username: fmt.Sprint(calls), Credential: member}}
	}
	_, url := newHub(t, signal.Options{ICEServers: ice, ICERefresh: 20 * time.Millisecond})
	for _, tr := range transports {
		c := dial(t, url, tr)
		j := join(t, c, "ice-"+tr, "x")
		last := j.ICEServers[0].Username
		for i := 0; i < 3; i++ {
			m := until(t, c, protocol.TypeICEServers)
			if len(m.ICEServers) != 1 || m.ICEServers[0].Username == last || m.ICEServers[0].Credential != j.ID {
				t.Fatalf("%s refresh %d: %+v after %s", tr, i, m.ICEServers, last)
			}
			last = m.ICEServers[0].Username
		}
		c.Leave(context.Background())
		until(t, c, protocol.TypeLeft)
	}
}

// wsFrom opens a raw WebSocket from the loopback address ip.
func wsFrom(ctx context.Context, url, ip string) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", &websocket.DialOptions{HTTPClient: from(ip)})
	return c, err
}

// readCode reads until the first error message (its code) or the close.
func readCode(ctx context.Context, c *websocket.Conn) string {
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return "closed"
		}
		var m protocol.Message
		json.Unmarshal(b, &m)
		if m.Type == protocol.TypeError || m.Type == protocol.TypeJoined {
			return m.Type + ":" + m.Code
		}
	}
}

// The flood test of issue #10: one abusive client per row 3–5 at once —
// a chat amplifier (silent members, a 60 KB sender to "*"), a connection
// and room storm, sockets that never join — while 10 well-behaved members,
// each from its own address, receive every message relayed to their room,
// in order, and the server's heap stays bounded. Latency under attack is a
// benchmark figure, not asserted here.
func TestFloodBounded(t *testing.T) {
	lat := runFlood(t, 200)
	t.Logf("relay latency under the flood: p50 %v, p99 %v (a figure, not asserted; see BenchmarkRelayUnderFlood)", lat[len(lat)/2], lat[len(lat)*99/100])
}

// BenchmarkRelayUnderFlood measures what well-behaved members see while
// the abusers of rows 3-5 do their worst: the relay latency of a calm
// room's messages (p50, p99) and the heap the flood costs: 400 messages
// at 40/s, whatever b.N (run it with -benchtime 1x).
func BenchmarkRelayUnderFlood(b *testing.B) {
	lat := runFlood(b, 400)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// runFlood runs one abusive client per row 3-5 while 10 members receive
// msgs messages from a calm sender, checks that they get all, in order,
// with the heap bounded, and returns the relay latencies, sorted.
func runFlood(t testing.TB, msgs int) []time.Duration {
	_, url := newHub(t, signal.Options{ConnsPerIP: 40, RoomsPerIP: 10, JoinTimeout: 2 * time.Second,
		Capacity: func(string, string) int { return 64 }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The well-behaved: a sender and 10 receivers, each its own address.
	sender := dialFrom(t, url, "127.0.1.100", "")
	join(t, sender, "calm", "sender")
	var rs []*seqReader
	for i := 0; i < 10; i++ {
		c := dialFrom(t, url, fmt.Sprintf("127.0.1.%d", i+1), "")
		join(t, c, "calm", fmt.Sprint("member", i))
		rs = append(rs, readSeqs(c))
	}
	go func() {
		for range sender.Events() {
		}
	}()
	base := heapInUse()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	results := make(chan string, 1024)
	abuse := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	var connsMu sync.Mutex
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	// open connects from ip and sends join (unless empty); nil on failure.
	open := func(row, ip, join string) *websocket.Conn {
		c, err := wsFrom(ctx, url, ip)
		if err != nil {
			results <- row + " dial: " + err.Error()
			return nil
		}
		connsMu.Lock()
		conns = append(conns, c)
		connsMu.Unlock()
		if join != "" {
			c.Write(ctx, websocket.MessageText, []byte(join))
		}
		return c
	}
	// Row 3: 30 silent members of a chat room and a sender of 60 KB to "*".
	abuse(func() {
		for i := 0; i < 30; i++ {
			if open("row3", "127.0.2.1", `{"type":"join","room":"chat.flood"}`) == nil {
				return
			}
		}
		c := open("row3", "127.0.2.2", `{"type":"join","room":"chat.flood"}`)
		if c == nil {
			return
		}
		codes := make(chan string, 1)
		go func() { // the flooder's own reader: it is told rate-limited
			for {
				_, b, err := c.Read(ctx)
				if err != nil {
					codes <- "closed"
					return
				}
				var m protocol.Message
				json.Unmarshal(b, &m)
				if m.Code == protocol.CodeRateLimited {
					codes <- m.Code
					return
				}
			}
		}()
		big := []byte(fmt.Sprintf(`{"type":"signal","to":"*","data":%q}`, strings.Repeat("A", 60<<10)))
		for {
			select {
			case <-stop:
				results <- "row3 flooder: " + <-codes
				return
			default:
			}
			if c.Write(ctx, websocket.MessageText, big) != nil {
				results <- "row3 flooder: " + <-codes
				return
			}
		}
	})
	// Row 4: connections from one address, each creating a room.
	abuse(func() {
		for i := 0; i < 80; i++ {
			c := open("row4", "127.0.3.1", fmt.Sprintf(`{"type":"join","room":"storm-%d"}`, i))
			if c == nil {
				return
			}
			results <- "row4 " + readCode(ctx, c)
		}
	})
	// Row 5: sockets that never join.
	abuse(func() {
		var cs []*websocket.Conn
		for i := 0; i < 30; i++ {
			c := open("row5", "127.0.4.1", "")
			if c == nil {
				return
			}
			cs = append(cs, c)
		}
		for _, c := range cs {
			results <- "row5 " + readCode(ctx, c)
		}
	})

	// Meanwhile the calm room talks: msgs messages of 1 KB at 40/s (a
	// well-behaved member: under the default 50/s sustained rate).
	sent := make([]time.Time, msgs)
	pad := strings.Repeat("c", 1000)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < msgs; i++ {
		sent[i] = time.Now()
		if err := sender.SendRaw(ctx, []byte(fmt.Sprintf(`{"type":"signal","to":"*","data":{"seq":%d,"pad":%q}}`, i, pad))); err != nil {
			t.Fatalf("calm send %d: %v", i, err)
		}
		<-tick.C
	}
	for i, r := range rs {
		r.waitSeq(t, fmt.Sprint("member", i), msgs-1)
	}
	// Weigh the server while the abusers still hold what they could get.
	grown := int64(heapInUse()) - int64(base)
	close(stop)
	wg.Wait()
	close(results)
	got := map[string]int{}
	for r := range results {
		got[r]++
	}
	t.Logf("heap growth %.1f MB; abusers got %v", float64(grown)/(1<<20), got)
	if grown > 50<<20 {
		t.Errorf("heap grew by %d MB under the flood", grown>>20)
	}
	if got["row3 flooder: "+protocol.CodeRateLimited] != 1 {
		t.Errorf("the chat flooder was not rate-limited: %v", got)
	}
	// 10 rooms, then too-many-rooms; past 40 connections too-many-connections
	// (exactly 30 and 40 unless the machine is so slow that refused sockets
	// reach their join deadline and give their slots back first).
	refused, noRoom := got["row4 error:"+protocol.CodeTooManyConnections], got["row4 error:"+protocol.CodeTooManyRooms]
	if got["row4 joined:"] != 10 || refused == 0 || refused+noRoom != 70 {
		t.Errorf("the connection storm: %v; want 10 rooms, then too-many-rooms, and too-many-connections past 40", got)
	}
	if got["row5 error:"+protocol.CodeJoinTimeout] != 30 {
		t.Errorf("sockets that never join: %v", got)
	}
	var lat []time.Duration
	for _, r := range rs {
		for i, at := range r.at[:msgs] {
			lat = append(lat, at.Sub(sent[i]))
		}
	}
	slices.Sort(lat)
	return lat
}
