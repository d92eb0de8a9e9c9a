package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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
// on node c, and bob and dave on node b, which runs in its own process. b
// is killed (SIGKILL, no goodbye): bob's session ended, his client goes to
// the next of the nodes his joined listed and resumes there with his
// token (internal/signal/move.go): same member, same room, and alice and
// carol are told nothing (no leave, no join), while signals reach him both
// ways. dave does not come back: when b's registry entry expires, alice
// and carol are told that he left, and never that bob did.
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
	dave := joinAt(t, addrs["URL"], "lossy", "dave")
	if want := []string{a.URL(), c.URL()}; !sameSet(bob.nodes, want) {
		t.Fatalf("bob's joined lists nodes %v, want %v", bob.nodes, want)
	}
	for _, m := range []*member{alice, carol} {
		m.until("dave joining", func(e protocol.Message) bool { return e.Type == protocol.TypePeerJoined && e.Name == "dave" })
	}
	bobID, daveID := bob.c.ID(), dave.c.ID()

	killed := time.Now()
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-bob.c.Done() // what bob's program sees: its session ended
	var (
		c2      *client.Client
		resumed *protocol.Message
		err     error
	)
	for _, url := range bob.nodes {
		if c2, resumed, err = client.Resume(ctx, url, bob.c.ResumeToken(), nil); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("bob resuming at another node: %v", err)
	}
	t.Cleanup(func() { c2.Close() })
	t.Logf("bob resumed at another node %v after the kill", time.Since(killed).Round(time.Millisecond))
	if resumed.Type != protocol.TypeResumed || !resumed.Moved || resumed.ID != bobID || resumed.Room != "lossy" {
		t.Fatalf("bob's resume at another node: %+v, want resumed, moved, as %s in lossy", resumed, bobID)
	}
	var listed []string
	for _, p := range resumed.Peers {
		listed = append(listed, p.Name)
	}
	if !sameSet(listed, []string{"alice", "carol", "dave"}) { // dave's node has not expired yet
		t.Fatalf("bob's resumed lists %v, want alice, carol and dave", listed)
	}
	bob.c = c2

	// Signals reach the moved bob and come from him, both ways.
	if err := alice.c.Signal(ctx, bobID, map[string]string{"hello": "again"}); err != nil {
		t.Fatal(err)
	}
	bob.until("alice's signal", func(e protocol.Message) bool { return e.Type == protocol.TypeSignal && e.From == alice.c.ID() })
	// dave goes with b's registry entry; bob stays, and nobody is ever
	// told he left or joined again.
	for _, m := range []*member{alice, carol} {
		m.until("dave leaving", func(e protocol.Message) bool {
			if (e.Type == protocol.TypePeerLeft || e.Type == protocol.TypePeerJoined) && e.ID == bobID {
				t.Fatalf("told %s about bob, who only moved", e.Type)
			}
			return e.Type == protocol.TypePeerLeft && e.ID == daveID
		})
	}
	t.Logf("alice and carol saw dave leave %v after the kill", time.Since(killed).Round(time.Millisecond))
	for _, to := range []*member{alice, carol} {
		if err := bob.c.Signal(ctx, to.c.ID(), map[string]string{"still": "here"}); err != nil {
			t.Fatal(err)
		}
		to.until("bob's signal after b expired", func(e protocol.Message) bool {
			if e.Type == protocol.TypePeerLeft && e.ID == bobID {
				t.Fatal("told bob left, who only moved")
			}
			return e.Type == protocol.TypeSignal && e.From == bobID
		})
	}
	for _, s := range []*server.Server{a, c} {
		if n := members(t, s); n != 3 {
			t.Errorf("%s counts %d members, want alice, carol and bob (no ghost)", s.URL(), n)
		}
	}
}

// TestClusterMoveFromLiveNode: bob's client, on node b, cannot reach b
// any more (as a laptop that changed networks) and resumes at node a with
// his token, over HTTP long-poll, while b still holds his session: a takes him over under the
// same ID, b ends its session quietly, and alice, on b, is told nothing
// and reaches him at a. His old token no longer works anywhere.
func TestClusterMoveFromLiveNode(t *testing.T) {
	a, b := clusterPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := joinAt(t, b.URL(), "move", "alice")
	bob := joinAt(t, b.URL(), "move", "bob")
	alice.until("bob joining", func(e protocol.Message) bool { return e.Type == protocol.TypePeerJoined && e.Name == "bob" })
	bobID, token := bob.c.ID(), bob.c.ResumeToken()

	c2, resumed, err := client.Resume(ctx, a.URL(), token, &client.Options{Transport: client.HTTP}) // WebSocket: TestClusterNodeLoss
	if err != nil {
		t.Fatalf("bob resuming at node a over HTTP: %v", err)
	}
	t.Cleanup(func() { c2.Close() })
	if !resumed.Moved || resumed.ID != bobID || len(resumed.Peers) != 1 || resumed.Peers[0].Name != "alice" {
		t.Fatalf("bob's resume at node a: %+v, want moved, as %s, with alice", resumed, bobID)
	}
	select { // b lets his old session go
	case <-bob.c.Done():
	case <-ctx.Done():
		t.Fatal("node b kept bob's old session")
	}
	old := bob.c
	bob.c = c2

	if err := alice.c.Signal(ctx, bobID, map[string]string{"where": "a"}); err != nil {
		t.Fatal(err)
	}
	bob.until("alice's signal at a", func(e protocol.Message) bool { return e.Type == protocol.TypeSignal && e.From == alice.c.ID() })
	if err := bob.c.Signal(ctx, alice.c.ID(), map[string]string{"from": "a"}); err != nil {
		t.Fatal(err)
	}
	alice.until("bob's signal from a", func(e protocol.Message) bool {
		if (e.Type == protocol.TypePeerLeft || e.Type == protocol.TypePeerJoined) && e.ID == bobID {
			t.Fatalf("alice was told %s about bob, who only moved", e.Type)
		}
		return e.Type == protocol.TypeSignal && e.From == bobID
	})
	for _, s := range []*server.Server{a, b} {
		if n := members(t, s); n != 2 {
			t.Errorf("%s counts %d members, want alice and bob", s.URL(), n)
		}
	}
	// The token that moved him is spent, at both nodes.
	for _, url := range []string{a.URL(), b.URL()} {
		if _, _, err := client.Resume(ctx, url, token, nil); !isResumeFailed(err) {
			t.Errorf("the spent token at %s: %v, want resume-failed", url, err)
		}
	}
	if old.ResumeToken() != token {
		t.Fatal("the old client's token changed")
	}
}

// isResumeFailed reports whether err is the server's resume-failed.
func isResumeFailed(err error) bool {
	var je *client.JoinError
	return errors.As(err, &je) && je.Code == protocol.CodeResumeFailed
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
