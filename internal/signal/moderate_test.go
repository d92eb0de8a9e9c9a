package signal_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// moderated is a hub with auth and a way to join with given grants.
func moderated(t *testing.T) (url string, joinAs func(c *client.Client, name string, g auth.Grants) *protocol.Message) {
	t.Helper()
	secret := []byte(strings.Repeat("m", 32))
	v, err := auth.NewVerifier(auth.Keys{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	_, url = newHub(t, signal.Options{Auth: v})
	return url, func(c *client.Client, name string, g auth.Grants) *protocol.Message {
		t.Helper()
		tok, err := auth.NewToken(secret, "mod-*", name, g, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		j, err := c.Join(ctx, "mod-room", name, tok)
		if err != nil {
			t.Fatalf("%s join: %v", name, err)
		}
		return j
	}
}

var adminGrants = auth.Grants{Publish: true, Subscribe: true, Admin: true}

func moderate(t *testing.T, c *client.Client, m protocol.Message) {
	t.Helper()
	m.Type = protocol.TypeModerate
	if err := c.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// closed waits for the session's end after its last message.
func closed(t *testing.T, c *client.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the connection stayed open")
	}
}

func TestJoinedTellsGrants(t *testing.T) {
	url, joinAs := moderated(t)
	j := joinAs(dial(t, url, ""), "ann", auth.Grants{Subscribe: true, Admin: true})
	if g := j.Grants; g == nil || g.Publish || !g.Subscribe || !g.Admin {
		t.Fatalf("joined grants %+v", g)
	}
	_, openURL := newHub(t, signal.Options{})
	j = join(t, dial(t, openURL, ""), "open-room", "bob")
	if g := j.Grants; g == nil || !g.Publish || !g.Subscribe || g.Admin {
		t.Fatalf("open server grants %+v, want publish and subscribe only", g)
	}
}

func TestModerateNeedsAdmin(t *testing.T) {
	url, joinAs := moderated(t)
	a, b := dial(t, url, ""), dial(t, url, "")
	joinAs(a, "a", auth.AllGrants)
	jb := joinAs(b, "b", auth.AllGrants)
	next(t, a, protocol.TypePeerJoined)
	for _, action := range []string{protocol.ActionRemove, protocol.ActionMute, protocol.ActionEnd} {
		moderate(t, a, protocol.Message{Action: action, ID: jb.ID})
		if m := next(t, a, protocol.TypeError); m.Code != protocol.CodeForbidden || !strings.Contains(m.Message, "admin") {
			t.Fatalf("%s without admin: %s %s", action, m.Code, m.Message)
		}
	}
	moderate(t, a, protocol.Message{Action: "ban", ID: jb.ID})
	expectError(t, a, protocol.CodeBadField)
	// Nothing reached b: its next message is the answer to a ping.
	if err := b.Send(context.Background(), protocol.Message{Type: protocol.TypePing}); err != nil {
		t.Fatal(err)
	}
	next(t, b, protocol.TypePong)
}

func TestModerateRemove(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			url, joinAs := moderated(t)
			admin, b, c := dial(t, url, ""), dial(t, url, tr), dial(t, url, "")
			ja := joinAs(admin, "admin", adminGrants)
			jb := joinAs(b, "b", auth.AllGrants)
			joinAs(c, "c", auth.AllGrants)
			next(t, admin, protocol.TypePeerJoined)
			next(t, admin, protocol.TypePeerJoined)
			next(t, b, protocol.TypePeerJoined)
			moderate(t, admin, protocol.Message{Action: protocol.ActionRemove, ID: "nobody"})
			expectError(t, admin, protocol.CodeNoSuchPeer)
			moderate(t, admin, protocol.Message{Action: protocol.ActionRemove, ID: jb.ID})
			if m := next(t, b, protocol.TypeRemoved); m.From != ja.ID || m.Room != "mod-room" {
				t.Fatalf("removed %+v", m)
			}
			closed(t, b)
			for _, o := range []*client.Client{admin, c} {
				if m := next(t, o, protocol.TypePeerLeft); m.ID != jb.ID {
					t.Fatalf("peer-left %s", m.ID)
				}
			}
		})
	}
}

func TestModerateMuteP2P(t *testing.T) {
	url, joinAs := moderated(t)
	admin, b := dial(t, url, ""), dial(t, url, "")
	ja := joinAs(admin, "admin", adminGrants)
	jb := joinAs(b, "b", auth.AllGrants)
	next(t, admin, protocol.TypePeerJoined)
	moderate(t, admin, protocol.Message{Action: protocol.ActionMute, ID: jb.ID})
	if m := next(t, b, protocol.TypeMuted); m.Track != "audio" || m.Kind != "audio" || m.From != ja.ID {
		t.Fatalf("muted %+v", m)
	}
	moderate(t, admin, protocol.Message{Action: protocol.ActionMute, ID: jb.ID, Track: "video"})
	if m := next(t, b, protocol.TypeMuted); m.Kind != "video" {
		t.Fatalf("muted %+v", m)
	}
}

func TestModerateEnd(t *testing.T) {
	url, joinAs := moderated(t)
	admin, b, c := dial(t, url, ""), dial(t, url, client.HTTP), dial(t, url, "")
	joinAs(admin, "admin", adminGrants)
	joinAs(b, "b", auth.AllGrants)
	joinAs(c, "c", auth.Grants{Subscribe: true})
	moderate(t, admin, protocol.Message{Action: protocol.ActionEnd})
	for _, o := range []*client.Client{admin, b, c} {
		for {
			m := <-o.Events()
			if m.Type == protocol.TypePeerJoined || m.Type == protocol.TypePeerLeft {
				continue
			}
			if m.Type != protocol.TypeEnded || m.Room != "mod-room" {
				t.Fatalf("got %+v, want ended", m)
			}
			break
		}
		closed(t, o)
	}
	// The room is gone: a new member finds it empty.
	d := dial(t, url, "")
	if j := joinAs(d, "d", auth.AllGrants); len(j.Peers) != 0 {
		t.Fatalf("room still has %d members", len(j.Peers))
	}
}
