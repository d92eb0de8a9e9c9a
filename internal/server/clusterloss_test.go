package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// clusterChildEnv makes TestClusterChild a node of the cluster whose
// NATS server is at the variable's value, run in its own process so that
// a test can kill it as a crash does (SIGKILL: no goodbye to anyone).
const clusterChildEnv = "PARLEY_TEST_CLUSTER_CHILD"

// TestClusterChild is not a test: TestClusterNodeLoss and
// TestClusterOriginLost run it as node b.
func TestClusterChild(t *testing.T) {
	nats := os.Getenv(clusterChildEnv)
	if nats == "" {
		t.Skip("only as TestClusterNodeLoss's node b")
	}
	b := mediaNode(t, "b", nats)
	fmt.Printf("\nURL %s\nOPS %s\n", b.URL(), b.OpsURL())
	select {} // until killed
}

// member is a pkg/client member of a cluster's room, with the events
// it was told.
type member struct {
	t      *testing.T
	c      *client.Client
	joined *protocol.Message
	nodes  []string
}

func joinAt(t *testing.T, url, room, name string) *member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialClient(t, url)
	m := &member{t: t, c: c}
	var err error
	m.joined, err = c.Join(ctx, room, name, mintToken(t, room, auth.Grants{Publish: true, Subscribe: true}))
	if err != nil {
		t.Fatalf("%s joining at %s: %v", name, url, err)
	}
	m.nodes = m.joined.Nodes
	return m
}

// until reads events until one satisfies ok (20 s at most).
func (m *member) until(what string, ok func(protocol.Message) bool) protocol.Message {
	m.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e, open := <-m.c.Events():
			if !open {
				m.t.Fatalf("waiting for %s: the session ended: %v", what, m.c.Err())
			}
			if ok(e) {
				return e
			}
		case <-timeout:
			m.t.Fatalf("waiting for %s: not within 20 s", what)
		}
	}
}

// seesRejoin waits until m was told that the member oldID left and that
// a member called name joined again (in either order) and returns its
// new ID.
func (m *member) seesRejoin(oldID, name string) string {
	m.t.Helper()
	left, newID := false, ""
	m.until(name+" leaving and joining again", func(e protocol.Message) bool {
		switch {
		case e.Type == protocol.TypePeerLeft && e.ID == oldID:
			left = true
		case e.Type == protocol.TypePeerJoined && e.Name == name && e.ID != oldID:
			newID = e.ID
		}
		return left && newID != ""
	})
	return newID
}

// TestClusterNodeLoss: a peer-to-peer room with alice on node a, carol
// on node c and bob on node b, which runs in its own process. b is
// killed (SIGKILL, no goodbye): bob, his session ended, dials the next of
// the nodes his joined listed and joins again; alice and carol are told
// that the old bob left (when b's registry entry expired: no ghost stays
// behind) and that bob joined, and a signal from alice reaches him.
func TestClusterNodeLoss(t *testing.T) {
	a := clusterNode(t, "a", "embedded")
	c := clusterNode(t, "c", a.Cluster().ClientURL())

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	child, addrs := runChild(t, "TestClusterChild", clusterChildEnv+"="+a.Cluster().ClientURL(), "URL", "OPS")

	// Every node, b included, lists the three before anyone joins.
	admin := "Bearer " + mintToken(t, "*", auth.Grants{Admin: true})
	listsThree := func(ops string) bool {
		code, _, body := do(t, "GET", ops+"/api/status", "", "Authorization", admin)
		var st struct {
			Cluster struct{ Nodes []struct{ ID string } }
		}
		return code == http.StatusOK && json.Unmarshal([]byte(body), &st) == nil && len(st.Cluster.Nodes) == 3
	}
	waitCluster(t, "a and c listing three nodes", []*server.Server{a, c}, func() bool { return listsThree(a.OpsURL()) && listsThree(c.OpsURL()) })
	for deadline := time.Now().Add(20 * time.Second); !listsThree(addrs["OPS"]); {
		if time.Now().After(deadline) {
			t.Fatal("node b never listed three nodes")
		}
		time.Sleep(20 * time.Millisecond) // polling another process's view, with a deadline
	}

	alice := joinAt(t, a.URL(), "lossy", "alice")
	carol := joinAt(t, c.URL(), "lossy", "carol")
	bob := joinAt(t, addrs["URL"], "lossy", "bob")
	if want := []string{a.URL(), c.URL()}; !sameSet(bob.nodes, want) {
		t.Fatalf("bob's joined lists nodes %v, want %v", bob.nodes, want)
	}
	for _, m := range []*member{alice, carol} {
		m.until("bob joining", func(e protocol.Message) bool { return e.Type == protocol.TypePeerJoined && e.Name == "bob" })
	}
	oldBob := bob.c.ID()

	killed := time.Now()
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-bob.c.Done() // what bob's program sees: its session ended
	c2, url, err := client.DialAny(ctx, bob.nodes, nil)
	if err != nil {
		t.Fatalf("bob reaching another node: %v", err)
	}
	t.Cleanup(func() { c2.Close() })
	if _, err := c2.Join(ctx, "lossy", "bob", mintToken(t, "lossy", auth.Grants{Publish: true, Subscribe: true})); err != nil {
		t.Fatalf("bob joining again at %s: %v", url, err)
	}
	bob.c = c2
	t.Logf("bob joined again at %s %v after the kill", url, time.Since(killed).Round(time.Millisecond))
	newBob := alice.seesRejoin(oldBob, "bob")
	carol.seesRejoin(oldBob, "bob")
	t.Logf("alice and carol saw bob back %v after the kill", time.Since(killed).Round(time.Millisecond))
	if newBob != c2.ID() {
		t.Fatalf("alice sees bob as %s, he is %s", newBob, c2.ID())
	}
	if err := alice.c.Signal(ctx, newBob, map[string]string{"hello": "again"}); err != nil {
		t.Fatal(err)
	}
	bob.until("alice's signal", func(e protocol.Message) bool { return e.Type == protocol.TypeSignal && e.From == alice.c.ID() })
	for _, s := range []*server.Server{a, c} {
		if n := members(t, s); n != 3 {
			t.Errorf("%s counts %d members, want alice, carol and bob (no ghost)", s.URL(), n)
		}
	}
}

// TestClusterDrain: bob is on node b, alice on node a; b is shut down
// (SIGTERM's path): bob is told server-shutdown with node a's URL, goes
// there and joins again, and alice sees his old member leave and the new
// one join.
func TestClusterDrain(t *testing.T) {
	a, b := clusterPair(t)
	alice := joinAt(t, a.URL(), "drained", "alice")
	bob := joinAt(t, b.URL(), "drained", "bob")
	alice.until("bob joining", func(e protocol.Message) bool { return e.Type == protocol.TypePeerJoined && e.Name == "bob" })
	oldBob := bob.c.ID()

	go b.Close()
	bye := bob.until("server-shutdown", func(e protocol.Message) bool { return e.Type == protocol.TypeServerShutdown })
	if bye.URL != a.URL() || bye.RetryMs <= 0 {
		t.Fatalf("server-shutdown %+v, want url %s and a retryMs", bye, a.URL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c2, err := client.Dial(ctx, bye.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c2.Close() })
	if _, err := c2.Join(ctx, "drained", "bob", mintToken(t, "drained", auth.Grants{Publish: true, Subscribe: true})); err != nil {
		t.Fatal(err)
	}
	if id := alice.seesRejoin(oldBob, "bob"); id != c2.ID() {
		t.Fatalf("alice sees bob as %s, he is %s", id, c2.ID())
	}
	if n := members(t, a); n != 2 {
		t.Errorf("a counts %d members, want alice and bob", n)
	}
}

// members is the number of members in rooms the server counts (remote
// members included).
func members(t *testing.T, s *server.Server) int {
	t.Helper()
	admin := "Bearer " + mintToken(t, "*", auth.Grants{Admin: true})
	_, _, body := do(t, "GET", s.OpsURL()+"/api/status", "", "Authorization", admin)
	var st struct{ Members int }
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st.Members
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// dialClient dials url with pkg/client, closed at the test's end.
func dialClient(t *testing.T, url string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runChild runs this test binary's test name in its own process with
// env added, and returns it once it printed a "KEY value" line for each
// of keys (and the values). It is killed at the test's end.
func runChild(t *testing.T, name, env string, keys ...string) (*exec.Cmd, map[string]string) {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run", "^"+name+"$", "-test.timeout", "5m")
	// The child's temporary files go under ours: a killed child never
	// removes its own (its cleanup does not run), our cleanup does.
	child.Env = append(os.Environ(), env, "TMPDIR="+t.TempDir())
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = &testLog{t: t}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	values := map[string]string{}
	sc := bufio.NewScanner(out)
	for len(values) < len(keys) && sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && slices.Contains(keys, k) {
			values[k] = v
		}
	}
	if len(values) < len(keys) {
		t.Fatalf("%s did not start: %v", name, sc.Err())
	}
	go func() { // keep the pipe drained
		for sc.Scan() {
		}
	}()
	return child, values
}

// clusterPair starts nodes a (with the embedded NATS server) and b and
// returns once each lists both.
func clusterPair(t *testing.T) (a, b *server.Server) {
	t.Helper()
	a = clusterNode(t, "a", "embedded")
	b = clusterNode(t, "b", a.Cluster().ClientURL())
	waitCluster(t, "a and b listing each other", []*server.Server{a, b}, func() bool {
		return len(a.Cluster().Nodes()) == 2 && len(b.Cluster().Nodes()) == 2
	})
	return a, b
}
