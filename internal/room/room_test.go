package room

import (
	"errors"
	"testing"
)

type inbox struct{ events []Event }

func member(name string) (*Member, *inbox) {
	in := &inbox{}
	return &Member{ID: NewID(), Name: name, Notify: func(e Event) bool { in.events = append(in.events, e); return true }}, in
}

func TestJoinCapacityRouteLeave(t *testing.T) {
	g := NewManager(10)
	a, ain := member("a")
	b, bin := member("b")
	c, _ := member("c")
	if _, peers, err := g.Join("r", P2P, 2, a); err != nil || len(peers) != 0 {
		t.Fatal(err, peers)
	}
	r, peers, err := g.Join("r", SFU, 5, b)
	if err != nil || len(peers) != 1 || peers[0] != a || r.Mode != P2P || r.Capacity != 2 {
		t.Fatalf("second join: %v %v %+v", err, peers, r)
	}
	if len(ain.events) != 1 || ain.events[0].Kind != PeerJoined || ain.events[0].From != b {
		t.Fatalf("a was not told: %+v", ain.events)
	}
	if _, _, err := g.Join("r", P2P, 2, c); !errors.Is(err, ErrFull) || c.Room() != nil {
		t.Fatalf("over capacity: %v", err)
	}
	if _, _, err := g.Join("q", P2P, 2, a); !errors.Is(err, ErrAlreadyJoined) {
		t.Fatalf("join twice: %v", err)
	}
	if ok, err := g.Route(a, b.ID, []byte(`1`)); !ok || err != nil || string(bin.events[0].Data) != "1" {
		t.Fatalf("route: %v %v", ok, err)
	}
	if ok, err := g.Route(b, Everyone, []byte(`2`)); !ok || err != nil || string(ain.events[len(ain.events)-1].Data) != "2" {
		t.Fatalf("route to everyone: %v %v", ok, err)
	}
	if _, err := g.Route(a, c.ID, nil); !errors.Is(err, ErrNoSuchPeer) {
		t.Fatalf("route to outsider: %v", err)
	}
	if _, err := g.Route(c, a.ID, nil); !errors.Is(err, ErrNotInRoom) {
		t.Fatalf("route from outsider: %v", err)
	}
	g.Leave(a)
	if last := bin.events[len(bin.events)-1]; last.Kind != PeerLeft || last.From != a {
		t.Fatalf("b not told of leave: %+v", last)
	}
	g.Leave(b)
	if rooms, members := g.Counts(); rooms != 0 || members != 0 {
		t.Fatalf("room left behind: %d %d", rooms, members)
	}
	if _, ok := g.Leave(b); ok {
		t.Fatal("double leave")
	}
}

func TestMaxRooms(t *testing.T) {
	g := NewManager(1)
	a, _ := member("a")
	b, _ := member("b")
	g.Join("one", P2P, 2, a)
	if _, _, err := g.Join("two", P2P, 2, b); !errors.Is(err, ErrTooManyRooms) {
		t.Fatal(err)
	}
}

func TestJoinIfAsksOnlyForNewRooms(t *testing.T) {
	g := NewManager(10)
	a, _ := member("a")
	b, _ := member("b")
	refuse := errors.New("no new rooms for you")
	asked := 0
	no := func(created bool, _ []*Member) error {
		if !created {
			return nil
		}
		asked++
		return refuse
	}
	if _, _, err := g.JoinIf("r", P2P, 4, a, no); !errors.Is(err, refuse) || a.Room() != nil || g.Lookup("r") != nil {
		t.Fatalf("refused creation: %v, room %v", err, a.Room())
	}
	if _, _, err := g.JoinIf("r", P2P, 4, a, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.JoinIf("r", P2P, 4, b, no); err != nil || asked != 1 {
		t.Fatalf("joining an existing room: %v, mayCreate asked %d times", err, asked)
	}
}

func TestRouteWireSharesOneEncoding(t *testing.T) {
	g := NewManager(10)
	a, _ := member("a")
	g.Join("r", P2P, 8, a)
	var ins []*inbox
	for i := 0; i < 5; i++ {
		m, in := member("m")
		g.Join("r", P2P, 8, m)
		ins = append(ins, in)
	}
	wire := []byte(`{"type":"signal"}`)
	if ok, err := g.RouteWire(a, Everyone, []byte(`1`), wire); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for _, in := range ins {
		e := in.events[len(in.events)-1]
		if e.Kind != Signal || &e.Wire[0] != &wire[0] {
			t.Fatalf("receiver got %+v, not the shared encoding", e)
		}
	}
}

// TestReplace: a member put in another's place under its ID keeps its
// place in the join order; the room's members are told nothing, the
// observer a join; messages to the ID reach the new member.
func TestReplace(t *testing.T) {
	g := NewManager(10)
	var observed []EventKind
	g.Observe(func(_ *Room, kind EventKind, _ *Member, _ string, _ *Member, _ []byte) {
		observed = append(observed, kind)
	})
	alice, aliceIn := member("alice")
	bob, _ := member("bob")
	carol, _ := member("carol")
	for _, m := range []*Member{alice, bob, carol} {
		if _, _, err := g.Join("r", P2P, 10, m); err != nil {
			t.Fatal(err)
		}
	}
	told, seen := len(aliceIn.events), len(observed)
	bob2, bob2In := member("bob")
	bob2.ID = bob.ID
	r, err := g.Replace(bob, bob2)
	if err != nil {
		t.Fatal(err)
	}
	if bob.Room() != nil || bob2.Room() != r {
		t.Fatal("the old member is still in the room, or the new one is not")
	}
	if got := r.Members(); len(got) != 3 || got[1] != bob2 {
		t.Fatalf("members %v, want bob's place taken by the new bob", got)
	}
	if len(aliceIn.events) != told {
		t.Fatalf("alice was told %d events of a replacement", len(aliceIn.events)-told)
	}
	if len(observed) != seen+1 || observed[seen] != PeerJoined {
		t.Fatalf("the observer saw %v, want one join", observed[seen:])
	}
	if _, err := g.Route(alice, bob.ID, []byte(`{}`)); err != nil || len(bob2In.events) != 1 {
		t.Fatalf("alice's message to bob's ID: %v, %d events at the new bob", err, len(bob2In.events))
	}
	if _, err := g.Replace(bob, bob2); !errors.Is(err, ErrAlreadyJoined) {
		t.Fatalf("replacing again: %v, want ErrAlreadyJoined", err)
	}
	other, _ := member("other")
	if _, err := g.Replace(carol, other); !errors.Is(err, ErrNotInRoom) {
		t.Fatalf("replacing with another ID: %v, want ErrNotInRoom", err)
	}
}
