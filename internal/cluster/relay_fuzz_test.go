package cluster

import (
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// FuzzRelayReceive: whatever another node (or anything else on NATS)
// publishes on a room's subject, receiving it does not panic, and what
// it accepts has the shape pkg/protocol demands of clients; a local
// member is told only well-formed JSON.
func FuzzRelayReceive(f *testing.F) {
	for _, s := range []string{
		`{"k":"join","n":"b","r":"room","m":"p2p","c":2,"p":{"id":"x","name":"X"},"f":"x"}`,
		`{"k":"signal","n":"b","r":"room","f":"x","t":"me","d":"eyJhIjoxfQ=="}`,
		`{"k":"signal","n":"b","r":"room","f":"x","d":"bm90IGpzb24="}`,
		`{"k":"leave","n":"b","r":"room","f":"x"}`,
		`{"k":"join","n":"b","r":"../x","m":"sfu","c":-1,"p":{"id":"y"},"f":"x"}`,
		`{"k":"join"`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rooms := room.NewManager(10)
		c := &Cluster{opts: Options{Node: Node{ID: "self"}}, log: slog.New(slog.DiscardHandler)}
		r := newRelay(c, RoomRelay{Rooms: rooms,
			PeerOf:     func(m *room.Member) protocol.Peer { return protocol.Peer{ID: m.ID, Name: m.Name} },
			RemoteInfo: func(p protocol.Peer) any { return p }})
		me := &room.Member{ID: "me", Name: "me", Notify: func(e room.Event) bool {
			if e.Kind == room.Signal && !json.Valid(e.Wire) {
				t.Errorf("a local member was told %q", e.Wire)
			}
			return true
		}}
		if _, _, err := rooms.Join("room", room.P2P, 10, me); err != nil {
			t.Fatal(err)
		}
		// A member x of node b is in the room, so that signals from it
		// reach the local member.
		r.receive(&nats.Msg{Data: []byte(`{"k":"join","n":"b","r":"room","m":"p2p","c":10,"p":{"id":"x","name":"X"},"f":"x"}`)})
		r.receive(&nats.Msg{Data: b})
		r.receive(&nats.Msg{Data: b}) // twice: a join told again, a signal after it
		if ev, err := decodeEvent(b); err == nil {
			if !protocol.ValidRoom(ev.Room) || ev.From == "" || len(ev.From) > protocol.MaxIDLen {
				t.Errorf("accepted %+v", ev)
			}
		}
		r.nodeGone("")
	})
}

// Both room modes cross nodes (group rooms' members are relayed too);
// anything else is refused.
func TestDecodeEventModes(t *testing.T) {
	for mode, ok := range map[string]bool{"p2p": true, "sfu": true, "mesh": false, "": false} {
		_, err := decodeEvent([]byte(`{"k":"join","n":"b","r":"room","m":"` + mode + `","c":2,"p":{"id":"x","name":"X"},"f":"x"}`))
		if (err == nil) != ok {
			t.Errorf("mode %q: err %v, want accepted %v", mode, err, ok)
		}
	}
}
