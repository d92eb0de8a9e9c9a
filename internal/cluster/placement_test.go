package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

func TestPlace(t *testing.T) {
	n := func(id string, cpu float64, sessions int, egress uint64) Node {
		return Node{ID: id, HTTP: "http://" + id, Load: Load{CPU: cpu, Sessions: sessions, EgressBits: egress}}
	}
	for _, tc := range []struct {
		name  string
		nodes []Node
		self  string
		want  string
	}{
		{"least CPU", []Node{n("a", 0.9, 0, 0), n("b", 0.2, 0, 0), n("c", 0.5, 0, 0)}, "a", "b"},
		{"sessions count", []Node{n("a", 0.1, 5000, 0), n("b", 0.1, 100, 0)}, "a", "b"},
		{"egress counts", []Node{n("a", 0.1, 0, 800e6), n("b", 0.2, 0, 0)}, "a", "b"},
		{"self within the slack stays", []Node{n("a", 0.23, 0, 0), n("b", 0.2, 0, 0)}, "a", "a"},
		{"self past the slack moves", []Node{n("a", 0.3, 0, 0), n("b", 0.2, 0, 0)}, "a", "b"},
		{"ties by ID", []Node{n("c", 0, 0, 0), n("b", 0, 0, 0)}, "", "b"},
		{"unreachable nodes are skipped", []Node{{ID: "a"}, n("b", 0.9, 0, 0)}, "", "b"},
		{"self unknown", []Node{n("b", 0.4, 0, 0), n("c", 0.1, 0, 0)}, "x", "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Place(tc.nodes, tc.self)
			if !ok || got.ID != tc.want {
				t.Errorf("Place = %q, %v; want %q", got.ID, ok, tc.want)
			}
		})
	}
	if _, ok := Place([]Node{{ID: "a"}}, "a"); ok {
		t.Error("Place found a node no client can reach")
	}
	var ids []string
	for _, x := range ByLoad([]Node{n("a", 0.5, 0, 0), n("b", 0.1, 0, 0), n("c", 0.3, 0, 0)}, "c") {
		ids = append(ids, x.ID)
	}
	if !slices.Equal(ids, []string{"b", "a"}) {
		t.Errorf("ByLoad without c = %v, want [b a]", ids)
	}
}

// TestPlaceRoom: node a is busy, b idle, c in between: a room placed
// from a goes to b, which claims it; c placing it finds b; when b dies
// the room goes to c once b's claim expired.
func TestPlaceRoom(t *testing.T) {
	srv := natsServer(t, natsserver.RANDOM_PORT, t.TempDir())
	url := srv.ClientURL()
	load := func(sessions int) func() Counters { return func() Counters { return Counters{Sessions: sessions} } }
	// Sessions far enough apart that the CPU term (0..1, the same
	// process's, sampled over different intervals) cannot change the order.
	a := startNode(t, Options{URLs: []string{url}, Node: Node{ID: "a"}, Load: load(30000)})
	b := startNode(t, Options{URLs: []string{url}, Node: Node{ID: "b"}, Load: load(0)})
	c := startNode(t, Options{URLs: []string{url}, Node: Node{ID: "c"}, Load: load(15000)})
	all := []*Cluster{a, b, c}
	waitFor(t, "everyone listing a, b and c", all, sees(all, "a", "b", "c"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	n, err := a.PlaceRoom(ctx, "placed")
	if err != nil || n.ID != "b" {
		t.Fatalf("a placed the room on %q (%v), want the idle b", n.ID, err)
	}
	if !b.Owns("placed") {
		t.Error("b does not own the room placed on it")
	}
	if n, err := c.PlaceRoom(ctx, "placed"); err != nil || n.ID != "b" {
		t.Errorf("c finds the room on %q (%v), want its owner b", n.ID, err)
	}
	// A claim request naming no valid room (anything on NATS) is not
	// answered and claims nothing.
	bad := "../" + strings.Repeat("x", 300)
	qctx, qcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if _, err := a.nc.RequestWithContext(qctx, claimSubject+"b", []byte(bad)); err == nil || b.Owns(bad) {
		t.Errorf("b answered a claim for %q (%v) or owns it", bad[:8], err)
	}
	qcancel()

	b.stop(false) // dies: no goodbye
	waitFor(t, "a and c listing a and c", []*Cluster{a, c}, sees([]*Cluster{a, c}, "a", "c"))
	for {
		n, err = a.PlaceRoom(ctx, "placed")
		if !errors.Is(err, ErrOwnerGone) {
			break
		}
		select { // polling until b's claim expires (the TTL), with a deadline
		case <-ctx.Done():
			t.Fatal("b's claim never expired")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil || n.ID != "c" || !c.Owns("placed") {
		t.Fatalf("after b died the room went to %q (%v), want c", n.ID, err)
	}
}
