package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/cluster"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
)

// TestClusterMembership: three nodes on loopback, the first running the
// embedded NATS server the others join, list each other with their
// addresses in the status (API) and count each other in /metrics; a node
// that leaves is gone from the others' lists. A server without --cluster
// shows no cluster at all.
func TestClusterMembership(t *testing.T) {
	a := clusterNode(t, "a", "embedded")
	b := clusterNode(t, "b", a.Cluster().ClientURL())
	c := clusterNode(t, "c", a.Cluster().ClientURL())
	all := []*server.Server{a, b, c}

	admin := "Bearer " + mintToken(t, "*", auth.Grants{Admin: true})
	type status struct {
		Cluster *struct {
			Node      string
			Connected bool
			Nodes     []struct{ ID, HTTP, Media, TURN string }
		}
	}
	statusOf := func(s *server.Server) status {
		code, _, body := do(t, "GET", s.OpsURL()+"/api/status", "", "Authorization", admin)
		var st status
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("/api/status: %d %s", code, body)
		}
		return st
	}
	listed := func(want ...string) func() bool {
		return func() bool {
			for _, s := range all[:len(want)] {
				st := statusOf(s)
				var ids []string
				for _, n := range st.Cluster.Nodes {
					ids = append(ids, n.ID)
				}
				if !st.Cluster.Connected || !slices.Equal(ids, want) {
					return false
				}
			}
			return true
		}
	}
	waitCluster(t, "every node listing a, b and c", all, listed("a", "b", "c"))

	st := statusOf(c)
	for i, n := range st.Cluster.Nodes {
		if n.HTTP != all[i].URL() || n.Media != all[i].SFU().UDPAddr().String() || n.TURN != all[i].TURN().UDPAddr().String() {
			t.Errorf("c lists %+v, want the addresses of %s", n, all[i].URL())
		}
	}
	if st.Cluster.Node != "c" {
		t.Errorf("c calls itself %q", st.Cluster.Node)
	}
	_, _, metrics := do(t, "GET", a.OpsURL()+"/metrics", "", "Authorization", admin)
	for _, want := range []string{"parley_cluster_nodes 3\n", "parley_cluster_connected 1\n", "parley_cluster_nats_out_messages_total "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	c.Close()
	waitCluster(t, "a and b listing a and b", all[:2], listed("a", "b"))

	alone := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret })
	_, _, body := do(t, "GET", alone.OpsURL()+"/api/status", "", "Authorization", admin)
	_, _, metrics = do(t, "GET", alone.OpsURL()+"/metrics", "", "Authorization", admin)
	if alone.Cluster() != nil || strings.Contains(body, `"cluster"`) || strings.Contains(metrics, "parley_cluster") {
		t.Errorf("a server without --cluster shows a cluster: %s", body)
	}
}

// clusterNode starts a server that is node id of the cluster at nats
// ("embedded": the node runs the NATS server, on a loopback port); mods
// change its configuration further.
func clusterNode(t *testing.T, id, nats string, mods ...func(*config.Config)) *server.Server {
	t.Helper()
	return startServer(t, func(c *config.Config) {
		c.AuthSecret, c.TURNSecret = testSecret, testSecret
		c.ClusterNode, c.ClusterTTL = id, config.Duration(time.Second)
		c.Cluster = nats
		if nats == "embedded" {
			c.ClusterListen = "127.0.0.1:0"
		}
		for _, mod := range mods {
			mod(c)
		}
	})
}

// TestClusterP2PCall: alice on node a and bob on node b are in one
// peer-to-peer room: alice is told bob joined, their offer, answer and
// candidates cross the nodes over NATS, and the call connects (a data
// channel message and Opus RTP arrive); bob's leaving reaches node a.
func TestClusterP2PCall(t *testing.T) {
	a := clusterNode(t, "a", "embedded")
	b := clusterNode(t, "b", a.Cluster().ClientURL())
	tok := mintToken(t, "across", auth.Grants{Publish: true, Subscribe: true})
	alice := newPeerToken(t, a.URL(), client.WebSocket, "across", "alice", tok, false)
	bob := newPeerToken(t, b.URL(), client.HTTP, "across", "bob", tok, false)
	callPeers(t, a, alice, bob, false)

	// alice's events are read by her call's goroutine: node a's count
	// of members (bob's stand-in included) tells that bob left there.
	admin := "Bearer " + mintToken(t, "*", auth.Grants{Admin: true})
	members := func() int {
		_, _, body := do(t, "GET", a.OpsURL()+"/api/status", "", "Authorization", admin)
		var st struct{ Members int }
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		return st.Members
	}
	if n := members(); n != 2 {
		t.Fatalf("node a counts %d members, want alice and bob", n)
	}
	bob.c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for members() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("bob's leaving never reached node a")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// waitCluster waits until cond holds, checking it at each change of any
// of the servers' cluster views.
func waitCluster(t *testing.T, what string, servers []*server.Server, cond func() bool) {
	t.Helper()
	var nodes []*cluster.Cluster
	for _, s := range servers {
		nodes = append(nodes, s.Cluster())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cluster.Await(ctx, nodes, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
