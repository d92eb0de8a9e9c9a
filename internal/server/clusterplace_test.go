package server_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
)

// TestClusterWHEPRedirect: with --cluster-redirect, a WHEP viewer of a
// stream whose origin (as the media relay names it in the streams
// bucket; written here as the relay does) is another node is sent there
// with a 307 (path and query kept), once its token and offer pass; a
// stream with no origin, or a node without the option, serves the viewer
// itself.
func TestClusterWHEPRedirect(t *testing.T) {
	a := startServer(t, func(c *config.Config) {
		c.AuthSecret, c.TURNSecret = testSecret, testSecret
		c.ClusterNode, c.ClusterTTL, c.Cluster, c.ClusterListen = "a", config.Duration(time.Second), "embedded", "127.0.0.1:0"
		c.ClusterRedirect = true
	})
	b := clusterNode(t, "b", a.Cluster().ClientURL())
	waitCluster(t, "a and b listing each other", []*server.Server{a, b}, func() bool {
		return len(a.Cluster().Nodes()) == 2 && len(b.Cluster().Nodes()) == 2
	})

	nc, err := nats.Connect(a.Cluster().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	waitFor(t, "the streams bucket, which the nodes' media relays open", func() bool {
		kv, err = js.KeyValue(ctx, "parley_streams")
		return err == nil
	})
	if _, err := kv.Put(ctx, base64.RawURLEncoding.EncodeToString([]byte("onb")), []byte(`{"stream":"onb","node":"b"}`)); err != nil {
		t.Fatal(err)
	}

	tok := mintToken(t, "onb", auth.Grants{Subscribe: true})
	offer := deadWHEPOffer(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	postAs := func(s *server.Server, stream, tok, body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/whep/"+stream+"?via=test", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	post := func(s *server.Server, stream string) *http.Response { return postAs(s, stream, tok, offer) }
	// The token and the offer are checked before the lookup, as on the
	// node that serves the viewer: no redirect for a request it would refuse.
	if resp := postAs(a, "onb", "garbage", offer); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a viewer with a bad token: %s, want 401 before any redirect", resp.Status)
	}
	if resp := postAs(a, "onb", mintToken(t, "other", auth.Grants{Subscribe: true}), offer); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer whose token names another stream: %s, want 403 before any redirect", resp.Status)
	}
	if resp := postAs(a, "onb", tok, "v=0 not an offer"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a viewer with a bad offer: %s, want 400 before any redirect", resp.Status)
	}
	if resp := post(a, "onb"); resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != b.URL()+"/whep/onb?via=test" {
		t.Errorf("a answered a viewer of b's stream %s, Location %q; want 307 to %s", resp.Status, resp.Header.Get("Location"), b.URL())
	}
	if resp := postAs(a, "nowhere", mintToken(t, "nowhere", auth.Grants{Subscribe: true}), offer); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a viewer of a stream with no origin: %s (Location %q), want 404 not live", resp.Status, resp.Header.Get("Location"))
	}
	if resp := post(b, "onb"); resp.StatusCode == http.StatusTemporaryRedirect {
		t.Error("b, the origin, redirected")
	}
}

// TestClusterMediaNode: a group room's joined names the node placement
// chose for its media ("mediaNode", absent when it is the node joined),
// the same for members on either node; a peer-to-peer room's names none,
// and joined lists the other nodes.
//
// A placed room whose members all left is released by its owner, and a
// later join places it again.
func TestClusterMediaNode(t *testing.T) {
	a, b := clusterPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok := mintToken(t, "placed", auth.Grants{Publish: true, Subscribe: true})
	var members []*client.Client
	mediaOf := func(s *server.Server, name string) string {
		cl := dialClient(t, s.URL())
		members = append(members, cl)
		j, err := cl.JoinMode(ctx, "placed", name, tok, "sfu")
		if err != nil {
			t.Fatal(err)
		}
		if j.Mode != "sfu" {
			t.Fatalf("joined a %s room", j.Mode)
		}
		if j.MediaNode == "" {
			return s.URL()
		}
		return j.MediaNode
	}
	onA, onB := mediaOf(a, "ann"), mediaOf(b, "bo")
	if onA != onB || (onA != a.URL() && onA != b.URL()) {
		t.Errorf("the room's media node: %q says a, %q says b; want the same, a or b", onA, onB)
	}
	// The last member gone, the owner gives the room up (at its second
	// heartbeat without members), and the next join places it anew.
	owner := func() string {
		o, err := a.Cluster().RoomOwner(ctx, "placed")
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if owner() == "" {
		t.Fatal("the placed room has no owner while its members are in it")
	}
	for _, m := range members {
		m.Close()
	}
	waitFor(t, "the empty room released", func() bool { return owner() == "" })
	if again := mediaOf(b, "di"); again != a.URL() && again != b.URL() {
		t.Errorf("placed again on %q", again)
	}
	if owner() == "" {
		t.Error("the room placed again has no owner")
	}
	cy := joinAt(t, a.URL(), "talk", "cy")
	if cy.joined.MediaNode != "" || len(cy.nodes) != 1 || cy.nodes[0] != b.URL() {
		t.Errorf("p2p joined at a: mediaNode %q, nodes %v; want none and [%s]", cy.joined.MediaNode, cy.nodes, b.URL())
	}
}
