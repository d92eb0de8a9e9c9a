package cluster

import (
	"slices"
	"testing"
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
