package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/cluster"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// TestClusterNodeKilledBrowsers: Alice's page is served by node a (which
// runs the embedded NATS server), Bob's by node b, a separate process;
// they are in one peer-to-peer call. b is killed (SIGKILL): Bob's page,
// finding b unreachable, goes by itself to the other node its joined
// listed (a) and resumes there with its token (internal/signal/move.go):
// the same member, so Alice is never told that Bob left, and their call,
// which never went through b, goes on.
func TestClusterNodeKilledBrowsers(t *testing.T) {
	clusterNodeGone(t, syscall.SIGKILL)
}

// TestClusterNodeDrainedBrowsers: as TestClusterNodeKilledBrowsers, but b
// is drained (SIGTERM): its server-shutdown names node a, and Bob's page
// goes there at its first attempt (no attempt at b, which is going away),
// and is back in the room there (as the same member when a was still
// told of him, or as a new one once b's goodbye reached a).
func TestClusterNodeDrainedBrowsers(t *testing.T) {
	clusterNodeGone(t, syscall.SIGTERM)
}

// clusterSecret is the browser cluster tests' --auth-secret and --turn-secret.
const clusterSecret = "cluster-e2e-secret-0123456789abcdef"

// twoNodes starts node a in this process (the embedded NATS server; mods
// change its config) and node b as its own process (extra: more of its
// flags), and returns once a lists b.
func twoNodes(t *testing.T, mods func(*config.Config), extra ...string) (*env, *procServer) {
	t.Helper()
	e := newEnv(t, func(c *config.Config) {
		c.AuthSecret, c.TURNSecret = clusterSecret, clusterSecret
		c.Cluster, c.ClusterListen, c.ClusterNode, c.ClusterTTL = "embedded", "127.0.0.1:0", "a", config.Duration(time.Second)
		if mods != nil {
			mods(c)
		}
	})
	a := e.srv.Cluster()
	p := startProcServer(t, append([]string{"--cluster", a.ClientURL(), "--cluster-node", "b", "--cluster-ttl", "1s",
		"--auth-secret", clusterSecret, "--turn-secret", clusterSecret}, extra...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cluster.Await(ctx, []*cluster.Cluster{a}, func() bool { return len(a.Nodes()) == 2 }); err != nil {
		t.Fatalf("a never listed b: %v", err)
	}
	return e, p
}

// clusterToken grants name publish and subscribe in room (or stream).
func clusterToken(t *testing.T, room, name string) string {
	t.Helper()
	tk, err := auth.NewToken([]byte(clusterSecret), room, name, auth.Grants{Publish: true, Subscribe: true}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func clusterNodeGone(t *testing.T, sig syscall.Signal) {
	// The registry keeps a killed node for the TTL: long enough here for
	// Bob's page to give b up (about 1.5 s) and move to a while a still
	// holds his member, as the default (15 s) does.
	ttl := func(c *config.Config) { c.ClusterTTL = config.Duration(10 * time.Second) }
	e, p := twoNodes(t, ttl, "--cluster-ttl", "10s")
	tok := func(name string) string { return "token=" + clusterToken(t, "spread", name) }
	alice, bob := e.launch("Alice"), e.launch("Bob")
	bob.base = p.url
	alice.join("spread", tok("alice"))
	bob.join("spread", tok("bob"))
	alice.waitMedia(30*time.Second, "Bob")
	bob.waitMedia(30*time.Second, "Alice")
	oldBob := eval[string](bob, `parleyApp.client.id`)
	eval[bool](bob, `(window.attempts = 0, window.back = '', parleyApp.client.addEventListener('reconnecting', () => attempts++),
		parleyApp.client.addEventListener('joined', () => back = 'joined'),
		parleyApp.client.addEventListener('resumed', (ev) => back = ev.detail.moved ? 'moved' : 'resumed'), true)`)
	eval[bool](alice, `(window.bobLeft = 0, parleyApp.client.addEventListener('peer-left', () => bobLeft++), true)`)

	p.stop(sig)
	bob.waitFor(30*time.Second, "Bob back in the room through node a", `window.back !== '' && parleyApp.client.state === 'joined'`,
		`[window.back, parleyApp.client.state, parleyApp.client.id, document.body.innerText.slice(0, 200)]`)
	newBob := eval[string](bob, `parleyApp.client.id`)
	how := eval[string](bob, `window.back`)
	t.Logf("Bob's page came back to node a: %s (id %s, was %s)", how, newBob, oldBob)
	if sig == syscall.SIGKILL && (how != "moved" || newBob != oldBob) {
		t.Fatalf("after the kill Bob's page came back %s as %s; want moved, as %s", how, newBob, oldBob)
	}
	alice.waitFor(30*time.Second, "one Bob, as Bob's page is now", fmt.Sprintf(`parleyApp.client.peers.size === 1 && parleyApp.client.peers.has(%s)`, jsString(newBob)),
		`[...parleyApp.client.peers.values()].map(p => p.id + ' ' + p.name)`)
	alice.waitMedia(30*time.Second, "Bob")
	bob.waitMedia(30*time.Second, "Alice")
	if n := eval[int](alice, `bobLeft`); how == "moved" && n != 0 {
		t.Errorf("Alice was told %d times that a peer left; Bob only moved", n)
	}
	if n := eval[int](bob, `attempts`); sig == syscall.SIGTERM && n != 1 {
		t.Errorf("Bob's page made %d attempts to reconnect after the drain; want 1, at the node server-shutdown named", n)
	}
}

// TestClusterGroupMoveBrowsers: Alice's page is served by node a, Bob's by
// node b (its own process); they are in one group (sfu) room, Bob's media
// on b's SFU. b is killed: Bob's page resumes at a as the same member
// (moved), builds its SFU link afresh there, and the two see and hear
// each other again, Alice never told that Bob left.
func TestClusterGroupMoveBrowsers(t *testing.T) {
	e, p := twoNodes(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.ClusterTTL = config.Duration(10 * time.Second) // a keeps Bob's member until his page moves (see clusterNodeGone)
	}, "--media-udp", "127.0.0.1:0", "--cluster-ttl", "10s")
	tok := func(name string) string { return "token=" + clusterToken(t, "moving", name) }
	alice, bob := e.launch("Alice"), e.launch("Bob")
	bob.base = p.url
	alice.join("moving", "mode=sfu", tok("alice"))
	bob.join("moving", "mode=sfu", tok("bob"))
	alice.waitMedia(40*time.Second, "Bob")
	bob.waitMedia(40*time.Second, "Alice")
	bobID := eval[string](bob, `parleyApp.client.id`)
	eval[bool](bob, `(window.back = '', parleyApp.client.addEventListener('joined', () => back = 'joined'),
		parleyApp.client.addEventListener('resumed', (ev) => back = ev.detail.moved ? 'moved' : 'resumed'), true)`)
	eval[bool](alice, `(window.left = 0, parleyApp.client.addEventListener('peer-left', () => left++), true)`)

	p.stop(syscall.SIGKILL)
	bob.waitFor(30*time.Second, "Bob's page moved to node a", `window.back !== '' && parleyApp.client.state === 'joined'`,
		`[window.back, parleyApp.client.state, document.body.innerText.slice(0, 200)]`)
	if how, id := eval[string](bob, `window.back`), eval[string](bob, `parleyApp.client.id`); how != "moved" || id != bobID {
		t.Fatalf("Bob's page came back %s as %s; want moved, as %s", how, id, bobID)
	}
	bob.waitMedia(40*time.Second, "Alice")
	alice.waitMedia(40*time.Second, "Bob")
	if n := eval[int](alice, `left`); n != 0 {
		t.Errorf("Alice was told %d times that a peer left; Bob only moved", n)
	}
}

// TestClusterWatchOnEdgeBrowser: a browser's watch page served by node b
// (its own process), opened before anything is published, says the
// stream is not live; ffmpeg then publishes over RTMP to node a, and the
// page, told by b that the stream went live on another node, plays it by
// itself through b's relay: it decodes the picture and hears the tone.
func TestClusterWatchOnEdgeBrowser(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	e, p := twoNodes(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.RTMP = "127.0.0.1:0"
	}, "--media-udp", "127.0.0.1:0")
	tok := func(g auth.Grants) string {
		tk, err := auth.NewToken([]byte(clusterSecret), "s", "someone", g, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return url.QueryEscape(tk)
	}
	v := e.launch("Val")
	v.do(30*time.Second, chromedp.Navigate(p.url+"/w/s?name=Val&token="+tok(auth.Grants{Subscribe: true})))
	v.waitFor(15*time.Second, "the page on b saying the stream is not live", `window.parleyApp && document.body.dataset.state === 'waiting'`, `document.body.innerText`)

	rtmpURL := fmt.Sprintf("rtmp://%s/live/s?token=%s", e.srv.RTMPAddr(), tok(auth.Grants{Publish: true}))
	stop := keepPublishing(t, func(ctx context.Context) *exec.Cmd { return rtmptest.Studio(ctx, rtmpURL) })
	defer stop()
	v.waitDecoding(40 * time.Second)
	v.waitFor(15*time.Second, "the 440 Hz tone through the relay", toneJS, `window.__toneSeen`)
}

// TestClusterGroupCallBrowsers: Alice's page is served by node a, Bob's
// and Carol's by node b (its own process); the three are in one group
// (sfu) room. Each sees and hears the other two: Bob's and Carol's
// tracks reach Alice through a's relay from b, Alice's reach both of
// them through one relay into b.
func TestClusterGroupCallBrowsers(t *testing.T) {
	e, p := twoNodes(t, func(c *config.Config) { c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off" }, "--media-udp", "127.0.0.1:0")
	tok := func(name string) string { return "token=" + clusterToken(t, "spanned", name) }
	alice, bob, carol := e.launch("Alice"), e.launch("Bob"), e.launch("Carol")
	bob.base, carol.base = p.url, p.url
	alice.join("spanned", "mode=sfu", tok("alice"))
	bob.join("spanned", "mode=sfu", tok("bob"))
	carol.join("spanned", "mode=sfu", tok("carol"))
	for _, b := range []*browser{alice, bob, carol} {
		if m := eval[string](b, `parleyApp.client.mode`); m != "sfu" {
			t.Fatalf("%s joined a %s room", b.name, m)
		}
	}
	alice.waitMedia(40*time.Second, "Bob", "Carol")
	bob.waitMedia(40*time.Second, "Alice", "Carol")
	carol.waitMedia(40*time.Second, "Alice", "Bob")
	if r := e.srv.ClusterMedia().Stats().Relays.Load(); r != 4 {
		t.Errorf("node a relays %d tracks in, want Bob's and Carol's audio and video (4)", r)
	}
}
