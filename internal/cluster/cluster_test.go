package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parley/parley/internal/cluster/clustertest"
	"github.com/parley/parley/internal/room"
)

// testTTL keeps the tests quick: a node that stops heartbeating is gone
// after a second.
const testTTL = time.Second

// natsServer runs a NATS server with JetStream on a loopback port.
func natsServer(t testing.TB, port int, dir string) *natsserver.Server {
	return clustertest.NATS(t, port, dir)
}

func startNode(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.TTL == 0 {
		o.TTL = testTTL
	}
	o.Node.HTTP = "http://127.0.0.1:1/" + o.Node.ID
	c, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("node %s: %v", o.Node.ID, err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitFor waits until cond holds, checking it at every change of any of
// the nodes' registries.
func waitFor(t *testing.T, what string, nodes []*Cluster, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Await(ctx, nodes, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func ids(c *Cluster) []string {
	var out []string
	for _, n := range c.Nodes() {
		out = append(out, n.ID)
	}
	return out
}

// sees says whether every node lists exactly want, and is connected.
func sees(nodes []*Cluster, want ...string) func() bool {
	return func() bool {
		for _, n := range nodes {
			if !n.Status().Connected || !slices.Equal(ids(n), want) {
				return false
			}
		}
		return true
	}
}

func TestRegistryConverges(t *testing.T) {
	srv := natsServer(t, natsserver.RANDOM_PORT, t.TempDir())
	url := srv.ClientURL()
	a := startNode(t, Options{URLs: []string{url}, Node: Node{ID: "a"}, Load: func() Counters { return Counters{Sessions: 7, EgressBytes: 1000} }})
	b := startNode(t, Options{URLs: []string{url}, Node: Node{ID: "b"}})
	c := startNode(t, Options{URLs: []string{url}, Node: Node{ID: "c"}})
	all := []*Cluster{a, b, c}
	waitFor(t, "three nodes listed everywhere", all, sees(all, "a", "b", "c"))
	for _, n := range c.Nodes() {
		if n.ID == "a" && (n.Load.Sessions != 7 || n.HTTP != "http://127.0.0.1:1/a" || n.Started.IsZero()) {
			t.Errorf("c sees a as %+v", n)
		}
	}

	// c dies: no goodbye; its entry expires after the TTL.
	c.stop(false)
	waitFor(t, "c gone after its TTL", all[:2], sees(all[:2], "a", "b"))

	// b leaves with a goodbye.
	b.Close()
	waitFor(t, "b gone", all[:1], sees(all[:1], "a"))
}

func TestEmbeddedServer(t *testing.T) {
	a := startNode(t, Options{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Token: "t0ken", Node: Node{ID: "a"}})
	if a.ClientURL() == "" {
		t.Fatal("no client URL")
	}
	b := startNode(t, Options{URLs: []string{a.ClientURL()}, Token: "t0ken", Node: Node{ID: "b"}})
	c := startNode(t, Options{URLs: []string{a.ClientURL()}, Token: "t0ken", Node: Node{ID: "c"}})
	all := []*Cluster{a, b, c}
	waitFor(t, "three nodes listed everywhere", all, sees(all, "a", "b", "c"))

	if _, err := Start(context.Background(), Options{URLs: []string{a.ClientURL()}, Token: "wrong", Node: Node{ID: "d"}, TTL: testTTL}); err == nil {
		t.Error("a node with the wrong token joined")
	}
	// Nothing listening: Start says so at once instead of waiting.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "nats://" + ln.Addr().String()
	ln.Close()
	if _, err := Start(context.Background(), Options{URLs: []string{closed}, Node: Node{ID: "e"}, TTL: testTTL}); err == nil {
		t.Error("a node joined a cluster with no NATS server")
	}
}

func TestNATSRestart(t *testing.T) {
	dir := t.TempDir()
	srv := natsServer(t, natsserver.RANDOM_PORT, dir)
	url := srv.ClientURL()
	_, p, _ := net.SplitHostPort(srv.Addr().String())
	port, _ := strconv.Atoi(p)
	var nodes []*Cluster
	var rooms []*room.Manager
	for _, id := range []string{"a", "b", "c"} {
		n, r := relayNode(t, url, id)
		nodes, rooms = append(nodes, n), append(rooms, r)
	}
	waitFor(t, "three nodes listed everywhere", nodes, sees(nodes, "a", "b", "c"))
	x, xch := member("x")
	if _, _, err := rooms[0].Join("r", room.P2P, 10, x); err != nil {
		t.Fatal(err)
	}
	v, _ := member("v")
	if _, _, err := rooms[1].Join("r", room.P2P, 10, v); err != nil {
		t.Fatal(err)
	}
	if e := next(t, xch, "v's join at x"); e.Kind != room.PeerJoined || e.From.ID != "v" {
		t.Fatalf("x got %v from %s", e.Kind, e.From.ID)
	}
	if owner, err := nodes[1].ClaimRoom(context.Background(), "standup"); err != nil || owner != "b" {
		t.Fatalf("claim: %q %v", owner, err)
	}
	s, _ := member("s") // a room without members would be released
	if _, _, err := rooms[1].Join("standup", room.P2P, 10, s); err != nil {
		t.Fatal(err)
	}

	// NATS goes away, and loses its (in-memory) state.
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "every node to notice", nodes, func() bool {
		for _, n := range nodes {
			if n.Status().Connected {
				return false
			}
		}
		return true
	})
	natsServer(t, port, dir)
	waitFor(t, "the registry to converge again", nodes, sees(nodes, "a", "b", "c"))
	ctx := context.Background()
	// The owner claims its room again at its first heartbeat back; poll
	// the bucket (ownership changes are not events).
	deadline := time.Now().Add(10 * time.Second)
	for {
		owner, err := nodes[0].RoomOwner(ctx, "standup")
		if err == nil && owner == "b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("room owner after the restart: %q %v", owner, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	if !nodes[1].Owns("standup") {
		t.Error("b does not know it still owns the room")
	}
	// Rooms still cross, and nobody was told anyone left: w joins on b,
	// x (on a since before) is told (its next event) and reaches w.
	w, wch := member("w")
	if _, peers, err := rooms[1].Join("r", room.P2P, 10, w); err != nil || len(peers) != 2 {
		t.Fatalf("w joined with %v, %v", peers, err)
	}
	if e := next(t, xch, "w's join at x"); e.Kind != room.PeerJoined || e.From.ID != "w" {
		t.Fatalf("x got %v from %s", e.Kind, e.From.ID)
	}
	if _, err := rooms[0].Route(x, "w", []byte(`"hi"`)); err != nil {
		t.Fatal(err)
	}
	if e := next(t, wch, "x's signal at w"); e.Kind != room.Signal || string(e.Data) != `"hi"` {
		t.Fatalf("w got %v %s", e.Kind, e.Data)
	}
	for _, n := range nodes { // while NATS runs (the cleanups would stop it first)
		n.Close()
	}
}

func TestRoomOwnershipRace(t *testing.T) {
	srv := natsServer(t, natsserver.RANDOM_PORT, t.TempDir())
	url := srv.ClientURL()
	a := startNode(t, Options{URLs: []string{url}, Node: Node{ID: "a"}})
	b := startNode(t, Options{URLs: []string{url}, Node: Node{ID: "b"}})
	all := []*Cluster{a, b}
	waitFor(t, "both nodes registered", all, sees(all, "a", "b"))
	ctx := context.Background()

	const rooms = 50
	for i := range rooms {
		room := fmt.Sprintf("room.%d", i)
		var owners [2]string
		var errs [2]error
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j, n := range all {
			wg.Go(func() {
				<-start
				owners[j], errs[j] = n.ClaimRoom(ctx, room)
			})
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("%s: %v, %v", room, errs[0], errs[1])
		}
		if owners[0] != owners[1] {
			t.Fatalf("%s: split brain: a says %s owns it, b says %s", room, owners[0], owners[1])
		}
		if a.Owns(room) == b.Owns(room) {
			t.Fatalf("%s: a owns it: %v, b owns it: %v", room, a.Owns(room), b.Owns(room))
		}
	}

	// Released, a room goes to the next claimer.
	room := "room.0"
	owner, other := a, b
	if b.Owns(room) {
		owner, other = b, a
	}
	if err := owner.ReleaseRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	if got, err := other.ClaimRoom(ctx, room); err != nil || got != other.opts.Node.ID {
		t.Fatalf("after release: %q %v", got, err)
	}

	// An owner that dies without goodbye stops refreshing its rooms: they
	// are free after the TTL.
	room = "room.1"
	owner, other = a, b
	if b.Owns(room) {
		owner, other = b, a
	}
	owner.stop(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := other.ClaimRoom(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		if got == other.opts.Node.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still owned by %s", room, got)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestEmbeddedListenerPerIP: the embedded server's listener takes at most
// ConnsPerIP connections from one address at once (the next is closed
// before the server's greeting), frees the place when one ends, keeps
// serving the others, and a client that never authenticates is let go
// (the server's auth timeout).
func TestEmbeddedListenerPerIP(t *testing.T) {
	a := startNode(t, Options{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Token: "t0ken", Node: Node{ID: "a"}, ConnsPerIP: 2})
	addr := strings.TrimPrefix(a.ClientURL(), "nats://")
	greeted := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && strings.HasPrefix(line, "INFO ")
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first, second := dial(), dial()
	if !greeted(first) || !greeted(second) {
		t.Fatal("the first two connections from one address were not greeted")
	}
	if greeted(dial()) {
		t.Fatal("a third connection from the same address was served")
	}
	if a.ln.refused.Load() != 1 {
		t.Errorf("refused %d connections, want 1", a.ln.refused.Load())
	}
	first.Close()
	// The place comes back once the listener saw the close: a new
	// connection is served then.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c := dial()
		if greeted(c) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection served after one of two closed")
		}
		time.Sleep(20 * time.Millisecond) // polling for the release, with a deadline
	}
	// second never sent CONNECT: the server drops it after its auth timeout.
	_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(second); err != nil {
		t.Errorf("an unauthenticated client was not let go: %v", err)
	}
	// Nodes still join through it.
	b := startNode(t, Options{URLs: []string{a.ClientURL()}, Token: "t0ken", Node: Node{ID: "b"}})
	all := []*Cluster{a, b}
	waitFor(t, "two nodes listed everywhere", all, sees(all, "a", "b"))
}
