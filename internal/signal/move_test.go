package signal

import (
	"testing"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/room"
)

// sealedFor seals a token for a member of room "r" on node "b".
func sealedFor(t testing.TB, h *Hub, g auth.Grants) (token, id string) {
	t.Helper()
	rooms := room.NewManager(10)
	s := &session{hub: h, grants: g, member: &room.Member{ID: room.NewID(), Notify: func(room.Event) bool { return true }}}
	if _, _, err := rooms.Join("r", room.P2P, 10, s.member); err != nil {
		t.Fatal(err)
	}
	token = h.sealToken(s)
	if token == "" || len(token) > 64 {
		t.Fatalf("sealed token %q: want 1-64 bytes (the resume field's limit)", token)
	}
	return token, s.member.ID
}

// TestSealedToken: a sealed token names its member and grants, and holds
// only for the room and node it was issued in; a tampered one does not
// open, and a hub without the key opens none.
func TestSealedToken(t *testing.T) {
	h := &Hub{opts: Options{MoveKey: MoveKey([]byte("shared")), Node: "b"}}
	g := auth.Grants{Publish: true, Admin: true}
	token, id := sealedFor(t, h, g)
	gotID, gotG, check, ok := h.openToken(token)
	if !ok || gotID != id || gotG != g {
		t.Fatalf("openToken = %q %+v %v, want %q %+v true", gotID, gotG, ok, id, g)
	}
	if !check("r", "b") {
		t.Error("the token does not hold for its own room and node")
	}
	for _, c := range [][2]string{{"r", "a"}, {"q", "b"}, {"", ""}} {
		if check(c[0], c[1]) {
			t.Errorf("the token holds for room %q at node %q", c[0], c[1])
		}
	}
	other := &Hub{opts: Options{MoveKey: MoveKey([]byte("another")), Node: "b"}}
	if _, _, check, ok := other.openToken(token); ok && check("r", "b") {
		t.Error("a token holds under another secret")
	}
	b := []byte(token)
	b[len(b)-3] ^= 1
	if _, _, check, ok := h.openToken(string(b)); ok && check("r", "b") {
		t.Error("a tampered token holds")
	}
	if _, _, _, ok := (&Hub{}).openToken(token); ok {
		t.Error("a hub that is not in a cluster opens sealed tokens")
	}
}

// FuzzOpenToken: whatever a client presents as a resume token, opening
// and checking it does not panic, and what opens names a member ID of
// the form this node makes up.
func FuzzOpenToken(f *testing.F) {
	h := &Hub{opts: Options{MoveKey: MoveKey([]byte("shared")), Node: "b"}}
	token, _ := sealedFor(f, h, auth.AllGrants)
	f.Add(token)
	f.Add("m")
	f.Add("0123456789abcdef0123456789abcdef")
	f.Fuzz(func(t *testing.T, s string) {
		id, _, check, ok := h.openToken(s)
		if !ok {
			return
		}
		if len(id) != 2*idBytes {
			t.Fatalf("id %q", id)
		}
		check("r", "b")
	})
}
