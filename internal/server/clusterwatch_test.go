package server_test

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/cluster/clustertest"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// TestClusterStreamStatusOnEdge: a node's stream status (the watch page's
// events) says a stream published on another node is live, before any
// viewer here asked for it (no relay runs yet), and that it ended.
func TestClusterStreamStatusOnEdge(t *testing.T) {
	a := mediaNode(t, "a", "embedded")
	b := mediaNode(t, "b", a.Cluster().ClientURL())
	waitCluster(t, "a and b listing each other", []*server.Server{a, b}, func() bool {
		return len(a.Cluster().Nodes()) == 2 && len(b.Cluster().Nodes()) == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ev := openEvents(t, b.URL()+"/api/streams/roam/events?token="+mintToken(t, "roam", auth.Grants{Subscribe: true}))
	if st := ev.next(t, "the first event", func(eventStatus) bool { return true }); st.Live {
		t.Fatalf("live before anyone published: %+v", st)
	}
	p := publishRelayed(ctx, t, a.URL()+"/whip/roam", mintToken(t, "roam", auth.Grants{Publish: true}))
	ev.next(t, "live on b while published on a", func(st eventStatus) bool { return st.Live })
	if r := b.ClusterMedia().Stats().Relays.Load(); r != 0 {
		t.Errorf("b relays %d tracks with no viewer", r)
	}
	p.end()
	ev.next(t, "ended", func(st eventStatus) bool { return !st.Live })
}

// TestClusterOriginLost: a stream's origin node (b, its own process) is
// killed while a WHEP viewer watches the stream on node a; the publisher
// comes back on node c, and the same viewer session on a goes on with
// the stream from c, without asking again: a's relay follows the
// stream's new origin and the viewer, waiting for the stream's return,
// continues on the relayed tracks.
func TestClusterOriginLost(t *testing.T) {
	a := clusterNode(t, "a", "embedded", func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.ReattachGrace = config.Duration(time.Minute) // the viewer waits for the stream's return
	})
	c := mediaNode(t, "c", a.Cluster().ClientURL())
	child, addrs := runChild(t, "TestClusterChild", clusterChildEnv+"="+a.Cluster().ClientURL(), "URL", "OPS")
	waitCluster(t, "a and c listing three nodes", []*server.Server{a, c}, func() bool {
		return len(a.Cluster().Nodes()) == 3 && len(c.Cluster().Nodes()) == 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pub := mintToken(t, "roam", auth.Grants{Publish: true})
	p1 := publishRelayed(ctx, t, addrs["URL"]+"/whip/roam", pub)
	waitFor(t, "a to learn that b has the stream", func() bool { n, ok := a.ClusterMedia().Elsewhere("roam"); return ok && n == "b" })

	// The viewer counts the intact packets of each kind it gets.
	var video, audio atomic.Int64
	api, _ := client.LoopbackAPI()
	v, err := whip.Play(ctx, a.URL()+"/whep/roam", whip.Options{API: api, Token: mintToken(t, "roam", auth.Grants{Subscribe: true}),
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			n, headLen := &audio, 1
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				n, headLen = &video, len(relayVP8Key)
			}
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if _, err := checkRelayPayload(pkt.Payload, headLen); err != nil {
					t.Errorf("%s: %v", tr.Kind(), err)
					return
				}
				n.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(context.Background())
	gets := func(what string) {
		t.Helper()
		v0, a0 := video.Load(), audio.Load()
		waitFor(t, what, func() bool { return video.Load() >= v0+relayEnough && audio.Load() >= a0+relayEnough })
	}
	gets("the stream from b on a")

	killed := time.Now()
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(p1.stop) // the publisher's program stops sending to the dead node
	<-p1.done
	p2 := publishRelayed(ctx, t, c.URL()+"/whip/roam", pub)
	defer p2.end()
	gets("the stream from c, on the same session")
	t.Logf("the viewer on a got the stream from c %v after b was killed", time.Since(killed).Round(time.Millisecond))
	if r := c.ClusterMedia().Stats().Streams.Load(); r != 1 {
		t.Errorf("c is the origin of %d streams, want 1", r)
	}
	if r := a.ClusterMedia().Stats().Relays.Load(); r != 2 {
		t.Errorf("a relays %d tracks, want the stream's 2 from c (the relay from b gone)", r)
	}
}

// TestClusterStreamsAfterNATSRestart: the NATS server (not a node's)
// restarts and loses its state; once the nodes are back, a stream
// published on node a is live in node b's status again (b follows the
// streams bucket anew) and a viewer on b gets it through the relay.
func TestClusterStreamsAfterNATSRestart(t *testing.T) {
	dir := t.TempDir()
	ns := clustertest.NATS(t, natsserver.RANDOM_PORT, dir)
	url := ns.ClientURL()
	_, p, _ := net.SplitHostPort(ns.Addr().String())
	port, _ := strconv.Atoi(p)
	a, b := mediaNode(t, "a", url), mediaNode(t, "b", url)
	defer b.Close() // while NATS still runs (its cleanup comes first)
	defer a.Close()
	nodes := []*server.Server{a, b}
	waitCluster(t, "a and b listing each other", nodes, func() bool {
		return len(a.Cluster().Nodes()) == 2 && len(b.Cluster().Nodes()) == 2
	})
	ns.Shutdown()
	ns.WaitForShutdown()
	waitCluster(t, "both nodes away from NATS", nodes, func() bool {
		return !a.Cluster().Status().Connected && !b.Cluster().Status().Connected
	})
	restarted := time.Now()
	clustertest.NATS(t, port, dir)
	waitCluster(t, "a and b back, listing each other", nodes, func() bool {
		return a.Cluster().Status().Connected && b.Cluster().Status().Connected && len(a.Cluster().Nodes()) == 2 && len(b.Cluster().Nodes()) == 2
	})
	t.Logf("nodes back %v after the restart", time.Since(restarted).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ev := openEvents(t, b.URL()+"/api/streams/back/events?token="+mintToken(t, "back", auth.Grants{Subscribe: true}))
	ev.next(t, "the first event", func(eventStatus) bool { return true })
	pub := publishRelayed(ctx, t, a.URL()+"/whip/back", mintToken(t, "back", auth.Grants{Publish: true}))
	defer pub.end()
	ev.next(t, "live on b after the NATS restart", func(st eventStatus) bool { return st.Live })
	t.Logf("live on b %v after the restart", time.Since(restarted).Round(time.Millisecond))
	v, err := playRelayed(ctx, b.URL()+"/whep/back", mintToken(t, "back", auth.Grants{Subscribe: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer v.sess.Close(context.Background())
	select {
	case <-v.gotAll:
	case <-ctx.Done():
		t.Fatal("the viewer on b got too little")
	}
}

// TestClusterPublisherBackOnOrigin: the publisher of a stream on node a
// goes and comes back on a (a new WHIP session) while a WHEP viewer
// watches on node b: the stream's entry goes and comes back, b relays
// again, and the same viewer session goes on.
func TestClusterPublisherBackOnOrigin(t *testing.T) {
	a := mediaNode(t, "a", "embedded")
	b := clusterNode(t, "b", a.Cluster().ClientURL(), func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.ReattachGrace = config.Duration(time.Minute) // the viewer waits for the stream's return
	})
	waitCluster(t, "a and b listing each other", []*server.Server{a, b}, func() bool {
		return len(a.Cluster().Nodes()) == 2 && len(b.Cluster().Nodes()) == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub := mintToken(t, "again", auth.Grants{Publish: true})
	p1 := publishRelayed(ctx, t, a.URL()+"/whip/again", pub)
	waitFor(t, "b to learn that a has the stream", func() bool { _, ok := b.ClusterMedia().Elsewhere("again"); return ok })
	var video atomic.Int64
	api, _ := client.LoopbackAPI()
	v, err := whip.Play(ctx, b.URL()+"/whep/again", whip.Options{API: api, Token: mintToken(t, "again", auth.Grants{Subscribe: true}),
		Kinds: []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo},
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				video.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(context.Background())
	waitFor(t, "video on b", func() bool { return video.Load() >= relayEnough })

	p1.end()
	waitFor(t, "the stream gone from b's view", func() bool { _, ok := b.ClusterMedia().Elsewhere("again"); return !ok })
	n := video.Load()
	p2 := publishRelayed(ctx, t, a.URL()+"/whip/again", pub)
	defer p2.end()
	waitFor(t, "video again on the same session", func() bool { return video.Load() >= n+relayEnough })
}
