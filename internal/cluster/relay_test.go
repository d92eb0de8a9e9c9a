package cluster

import (
	"fmt"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// relayNode is a node whose rooms are relayed, with its own room manager.
func relayNode(t *testing.T, url, id string) (*Cluster, *room.Manager) {
	t.Helper()
	rooms := room.NewManager(100)
	c := startNode(t, Options{URLs: []string{url}, Node: Node{ID: id}, Relay: &RoomRelay{Rooms: rooms,
		PeerOf:     func(m *room.Member) protocol.Peer { return protocol.Peer{ID: m.ID, Name: m.Name} },
		RemoteInfo: func(p protocol.Peer) any { return p }}})
	return c, rooms
}

// member is a local member whose events arrive on a channel.
func member(id string) (*room.Member, chan room.Event) {
	ch := make(chan room.Event, 1000)
	return &room.Member{ID: id, Name: id, Notify: func(e room.Event) bool { ch <- e; return true }}, ch
}

// waitMembers waits until the node's room has n members (local and
// remote), polling with a deadline: mirrored joins are not events here.
func waitMembers(t *testing.T, rooms *room.Manager, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r := rooms.Lookup(name); r == nil || len(r.Members()) != n; r = rooms.Lookup(name) {
		if time.Now().After(deadline) {
			t.Fatalf("room %s never had %d members", name, n)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

func next(t *testing.T, ch chan room.Event, what string) room.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatalf("no event: waiting for %s", what)
		return room.Event{}
	}
}

// TestRelayOrdering: y (node b) is in a room; x joins it on node a and at
// once sends 200 signals to everyone and one to y: y is told x joined
// before any of them, then gets them all in order. z, on node c started
// afterwards, finds x and y in the room. When node a dies without
// goodbye, y and z are told x left once a's TTL has passed.
func TestRelayOrdering(t *testing.T) {
	srv := natsServer(t, natsserver.RANDOM_PORT, t.TempDir())
	a, roomsA := relayNode(t, srv.ClientURL(), "a")
	_, roomsB := relayNode(t, srv.ClientURL(), "b")

	y, ych := member("y")
	if _, _, err := roomsB.Join("r", room.P2P, 10, y); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, roomsA, "r", 1) // x joins on a once a knows y (y's join crossed)
	x, xch := member("x")
	_, peers, err := roomsA.Join("r", room.P2P, 10, x)
	if err != nil || len(peers) != 1 || peers[0].ID != "y" || !peers[0].Remote {
		t.Fatalf("x joined with peers %v, %v", peers, err)
	}
	const n = 200
	for i := range n {
		if _, err := roomsA.Route(x, room.Everyone, fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := roomsA.Route(x, "y", []byte(`"to y"`)); err != nil {
		t.Fatal(err)
	}
	if e := next(t, ych, "x's join"); e.Kind != room.PeerJoined || e.From.ID != "x" {
		t.Fatalf("y's first event: %v from %s", e.Kind, e.From.ID)
	}
	for i := range n {
		e := next(t, ych, "x's signals")
		if e.Kind != room.Signal || e.From.ID != "x" || string(e.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("signal %d: %v %s", i, e.Kind, e.Data)
		}
	}
	if e := next(t, ych, "x's signal to y"); string(e.Data) != `"to y"` {
		t.Fatalf("signal to y: %s", e.Data)
	}

	// A node that starts later is told who is there.
	_, roomsC := relayNode(t, srv.ClientURL(), "c")
	waitMembers(t, roomsC, "r", 2)
	z, zch := member("z")
	if _, peers, err := roomsC.Join("r", room.P2P, 10, z); err != nil || len(peers) != 2 {
		t.Fatalf("z joined with peers %v, %v", peers, err)
	}
	if e := next(t, xch, "z's join at x"); e.Kind != room.PeerJoined || e.From.ID != "z" {
		t.Fatalf("x's event: %v from %s", e.Kind, e.From.ID)
	}

	// Node a dies: its member leaves everywhere after the TTL.
	a.stop(false)
	for _, ch := range []chan room.Event{ych, zch} {
		for {
			e := next(t, ch, "x's leave")
			if e.Kind == room.PeerLeft && e.From.ID == "x" {
				break
			}
		}
	}
}
