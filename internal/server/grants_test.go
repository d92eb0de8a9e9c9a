package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/protocol"
)

// authServer runs a server with auth on and mints tokens for its rooms.
func authServer(t *testing.T) (*server.Server, func(name string, g auth.Grants) string) {
	t.Helper()
	secret := strings.Repeat("g", 32)
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.AuthSecret = secret
	})
	return srv, func(name string, g auth.Grants) string {
		tok, err := auth.NewToken([]byte(secret), "*", name, g, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

func forbidden(t *testing.T, m *sfuMember, grant string) {
	t.Helper()
	select {
	case e := <-m.refused:
		if !strings.Contains(e.Message, grant) {
			t.Fatalf("forbidden error %q does not name the %s grant", e.Message, grant)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no forbidden error naming %s", grant)
	}
}

func publishedBy(r *sfu.Room, id string) int {
	n := 0
	for _, ti := range r.Tracks() {
		if ti.Publisher == id {
			n++
		}
	}
	return n
}

// Row 1: a member whose token lacks publish sends a sendonly offer in an
// sfu room: the server answers with the section inactive, says forbidden,
// publishes nothing of it, and the member still receives and stays.
func TestRow01PublishGrantInSFURoom(t *testing.T) {
	srv, token := authServer(t)
	pub := joinSFUAs(t, srv.URL(), "grp1", "pub", token("pub", auth.AllGrants))
	viewer := joinSFUAs(t, srv.URL(), "grp1", "viewer", token("viewer", auth.Grants{Subscribe: true}))
	if g := viewer.grants; g == nil || g.Publish || !g.Subscribe || g.Admin {
		t.Fatalf("joined grants %+v", g)
	}
	viewer.publish() // a sendonly section for a VP8 track
	forbidden(t, viewer, "publish")
	// The answer lets it send on no section: its sending section is
	// answered inactive (or sendonly, the server's side, for sendrecv).
	answer := *viewer.answer.Load()
	for _, tr := range viewer.pc.GetTransceivers() {
		if tr.Sender() == nil || tr.Sender().Track() == nil {
			continue
		}
		if d := sectionDirection(answer, tr.Mid()); d != "inactive" && d != "sendonly" {
			t.Fatalf("the answer takes media on section %s (%s):\n%s", tr.Mid(), d, answer)
		}
	}
	room, ok := srv.SFU().LookupRoom(sfu.Calls, "grp1")
	if !ok {
		t.Fatal("no room")
	}
	if n := publishedBy(room, viewer.id); n != 0 {
		t.Fatalf("the viewer publishes %d tracks", n)
	}
	// The viewer stays and receives what pub publishes.
	stop := make(chan struct{})
	defer close(stop)
	go sendKeyframes(stop, pub.publish())
	receives(t, viewer, "the subscribe-only member")
	if n := publishedBy(room, viewer.id); n != 0 {
		t.Fatalf("the viewer publishes %d tracks", n)
	}
	// Data it sends is refused (sending needs publish), back on its channel.
	waitFor(t, "data channels open", func() bool {
		return viewer.dc.ReadyState() == webrtc.DataChannelStateOpen && pub.dc.ReadyState() == webrtc.DataChannelStateOpen
	})
	viewer.dc.SendText(`{"type":"chat","text":"may I?"}`)
	var rel map[string]string
	json.Unmarshal(recvData(t, viewer).Data, &rel)
	if rel["type"] != "relay-error" || rel["code"] != "forbidden" || !strings.Contains(rel["message"], "publish") {
		t.Fatalf("viewer's data: %v", rel)
	}
}

// Row 2: a member whose token lacks subscribe is not subscribed to what
// others publish, may not ask for a track, and receives no relayed data;
// it still publishes.
func TestRow02SubscribeGrantInSFURoom(t *testing.T) {
	srv, token := authServer(t)
	full := joinSFUAs(t, srv.URL(), "grp2", "full", token("full", auth.AllGrants))
	sender := joinSFUAs(t, srv.URL(), "grp2", "sender", token("sender", auth.Grants{Publish: true}))
	pub := joinSFUAs(t, srv.URL(), "grp2", "pub", token("pub", auth.AllGrants))
	stop := make(chan struct{})
	defer close(stop)
	go sendKeyframes(stop, pub.publish())
	receives(t, full, "the full member")
	room, _ := srv.SFU().LookupRoom(sfu.Calls, "grp2")
	p, ok := room.Participant(sender.id)
	if !ok {
		t.Fatal("no participant for the publish-only member")
	}
	if st := p.Stats(); st.Subscribed != 0 {
		t.Fatalf("the publish-only member has %d subscriptions", st.Subscribed)
	}
	tracks := room.Tracks()
	if len(tracks) != 1 || tracks[0].Subscribers != 1 {
		t.Fatalf("tracks %+v, want one with one subscriber", tracks)
	}
	sender.media(mediaMsg{Subscribe: map[string]any{"track": tracks[0].ID, "quality": "high"}})
	forbidden(t, sender, "subscribe")
	// Relayed data reaches full, not sender.
	waitFor(t, "data channels open", func() bool {
		return pub.dc.ReadyState() == webrtc.DataChannelStateOpen && full.dc.ReadyState() == webrtc.DataChannelStateOpen &&
			sender.dc.ReadyState() == webrtc.DataChannelStateOpen
	})
	pub.dc.SendText(`{"text":"to all"}`)
	pub.dc.SendText(`{"text":"to sender","to":"` + sender.id + `"}`)
	recvData(t, full)
	// sender publishes: it may send, and what it sends reaches full.
	go sendKeyframes(stop, sender.publish())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if room.WaitTracks(ctx, 2) < 2 || publishedBy(room, sender.id) != 1 {
		t.Fatal("the publish-only member could not publish")
	}
	select {
	case <-full.got:
	case <-ctx.Done():
		t.Fatal("its track never reached the full member")
	}
	select {
	case tr := <-sender.got:
		t.Fatalf("the publish-only member received track %s", tr.ID())
	case msg := <-sender.data:
		t.Fatalf("the publish-only member received data %q", msg.Data)
	default:
	}
}

// An admin mutes a member's video in an sfu room: the publisher is told
// which track, the server stops forwarding it, and the publisher's unmute
// lets it flow again.
func TestModerateMuteSFU(t *testing.T) {
	srv, token := authServer(t)
	admin := joinSFUAs(t, srv.URL(), "grp3", "admin", token("admin", auth.Grants{Publish: true, Subscribe: true, Admin: true}))
	pub := joinSFUAs(t, srv.URL(), "grp3", "pub", token("pub", auth.AllGrants))
	stop := make(chan struct{})
	defer close(stop)
	go sendKeyframes(stop, pub.publish())
	receives(t, admin, "the admin")
	ctx := context.Background()
	admin.c.Send(ctx, protocol.Message{Type: protocol.TypeModerate, Action: protocol.ActionMute, ID: pub.id, Track: "video"})
	var muted protocol.Message
	select {
	case muted = <-pub.events:
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher was not told")
	}
	room, _ := srv.SFU().LookupRoom(sfu.Calls, "grp3")
	tracks := room.Tracks()
	if muted.Type != protocol.TypeMuted || muted.Kind != "video" || muted.From != admin.id || len(tracks) != 1 || muted.Track != tracks[0].ID || !tracks[0].Muted {
		t.Fatalf("muted %+v, tracks %+v", muted, tracks)
	}
	// Held: the publisher's packets keep arriving at the server, none
	// leave it.
	p, _ := room.Participant(admin.id)
	sent := p.Stats().Packets
	recv := srv.SFU().Stats().Received
	waitFor(t, "publisher packets while muted", func() bool { return srv.SFU().Stats().Received > recv+20 })
	if now := p.Stats().Packets; now > sent+2 { // one may have been on its way
		t.Fatalf("%d packets forwarded while muted", now-sent)
	}
	// The publisher unmutes its own track; only it may.
	admin.media(mediaMsg{Unmute: map[string]any{"track": muted.Track}})
	select {
	case code := <-admin.errs:
		if code != "no-such-track" {
			t.Fatalf("admin's unmute of another's track: %s", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("admin's unmute of another's track was not refused")
	}
	pub.media(mediaMsg{Unmute: map[string]any{"track": muted.Track}})
	before := admin.packets.Load()
	waitFor(t, "packets after unmute", func() bool { return admin.packets.Load() > before+5 })
}

// sectionDirection is the direction attribute of the section with mid.
func sectionDirection(desc, mid string) string {
	var sd sdp.SessionDescription
	if sd.UnmarshalString(desc) != nil {
		return ""
	}
	for _, md := range sd.MediaDescriptions {
		if v, _ := md.Attribute("mid"); v != mid {
			continue
		}
		for _, a := range md.Attributes {
			if a.Key == "sendrecv" || a.Key == "sendonly" || a.Key == "recvonly" || a.Key == "inactive" {
				return a.Key
			}
		}
	}
	return ""
}

// receives waits for m's first track and its packets.
func receives(t *testing.T, m *sfuMember, who string) {
	t.Helper()
	select {
	case <-m.got:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s receives nothing", who)
	}
	waitFor(t, "packets", func() bool { return m.packets.Load() > 3 })
}
