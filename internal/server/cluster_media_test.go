package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// mediaNode is a cluster node whose SFU pion peers on loopback reach, with
// room for many viewers connecting from one address at once and viewers
// let go soon after their stream ended.
func mediaNode(t *testing.T, id, nats string) *server.Server {
	t.Helper()
	return clusterNode(t, id, nats, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.PendingPerIP = 64
		c.ReattachGrace = config.Duration(100 * time.Millisecond)
	})
}

// Relay test media: each packet's payload is a VP8 frame header (key or
// delta) or an Opus byte, then the publisher's packet counter and bytes
// derived from it, so a viewer can check every payload arrived intact and
// that sequence numbers and timestamps moved with the counter.
var (
	relayVP8Key   = []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00}
	relayVP8Delta = []byte{0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}
)

const relayBody = 200 // bytes after the header and the counter

func relayPayload(head []byte, n uint32) []byte {
	b := append(append([]byte(nil), head...), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(head):], n)
	for i := range relayBody {
		b = append(b, byte(n)+byte(i))
	}
	return b
}

// checkRelayPayload returns the counter of an intact payload.
func checkRelayPayload(p []byte, headLen int) (uint32, error) {
	if len(p) != headLen+4+relayBody {
		return 0, fmt.Errorf("payload of %d bytes, want %d", len(p), headLen+4+relayBody)
	}
	n := binary.BigEndian.Uint32(p[headLen:])
	if !bytes.Equal(p, relayPayload(p[:headLen], n)) {
		return 0, fmt.Errorf("payload %d altered", n)
	}
	return n, nil
}

// relayPublisher publishes VP8 (a keyframe first and then only when asked
// by a PLI: keyframes for viewers on other nodes must be asked for across
// the relay) and Opus over WHIP until stop.
type relayPublisher struct {
	sess *whip.Session
	stop chan struct{}
	done chan struct{}
	plis atomic.Int64
}

func publishRelayed(ctx context.Context, t *testing.T, url, token string) *relayPublisher {
	t.Helper()
	api, _ := client.LoopbackAPI()
	video := vp8(t)
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "pub")
	if err != nil {
		t.Fatal(err)
	}
	p := &relayPublisher{stop: make(chan struct{}), done: make(chan struct{})}
	p.sess, err = whip.Publish(ctx, url, whip.Options{API: api, Token: token, OnRTCP: func(_ *webrtc.RTPSender, pkts []rtcp.Packet) {
		for _, pk := range pkts {
			switch pk.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.plis.Add(1)
			}
		}
	}}, video, audio)
	if err != nil {
		t.Fatalf("WHIP %s: %v", url, err)
	}
	answered := int64(0)
	go func() {
		defer close(p.done)
		tickUntil(p.stop, 20*time.Millisecond, func(n uint32) {
			head := relayVP8Delta
			if plis := p.plis.Load(); n == 0 || plis > answered {
				head, answered = relayVP8Key, plis
			}
			_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(n), Timestamp: n * 1800}, Payload: relayPayload(head, n)})
			_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: n * 960}, Payload: relayPayload([]byte{0x78}, n)})
		})
	}()
	return p
}

// tickUntil calls f every d with a counter from 0, until stop closes.
func tickUntil(stop <-chan struct{}, d time.Duration, f func(n uint32)) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for n := uint32(0); ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		f(n)
	}
}

func (p *relayPublisher) end() {
	close(p.stop)
	<-p.done
	p.sess.Close(context.Background())
}

// relayViewer is a WHEP viewer that checks what it receives.
type relayViewer struct {
	sess   *whip.Session
	mu     sync.Mutex
	err    error
	video  int // intact video packets
	audio  int
	ended  chan struct{} // both tracks' reads ended
	gotAll chan struct{} // enough of both
	once   sync.Once
}

const relayEnough = 40 // packets of each kind a viewer must get

func playRelayed(ctx context.Context, url, token string) (*relayViewer, error) {
	api, _ := client.LoopbackAPI()
	v := &relayViewer{ended: make(chan struct{}), gotAll: make(chan struct{})}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { readers.Wait(); close(v.ended) }()
	var err error
	v.sess, err = whip.Play(ctx, url, whip.Options{API: api, Token: token, OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		defer readers.Done()
		video := tr.Kind() == webrtc.RTPCodecTypeVideo
		headLen := 1
		if video {
			headLen = len(relayVP8Key)
		}
		var first *rtp.Packet
		var n0 uint32
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			n, err := checkRelayPayload(pkt.Payload, headLen)
			if err == nil && first == nil && video && !bytes.Equal(pkt.Payload[:headLen], relayVP8Key) {
				err = errors.New("the first video packet is not a keyframe")
			}
			if err == nil && first != nil {
				clock := uint32(960)
				if video {
					clock = 1800
				}
				dn := n - n0
				if uint16(pkt.SequenceNumber-first.SequenceNumber) != uint16(dn) || pkt.Timestamp-first.Timestamp != dn*clock {
					err = fmt.Errorf("%s packet %d: sequence %d, timestamp %d; first was packet %d, %d, %d",
						tr.Kind(), n, pkt.SequenceNumber, pkt.Timestamp, n0, first.SequenceNumber, first.Timestamp)
				}
			}
			if first == nil {
				first, n0 = pkt, n
			}
			v.mu.Lock()
			if err != nil && v.err == nil {
				v.err = err
			}
			if video {
				v.video++
			} else {
				v.audio++
			}
			if v.video >= relayEnough && v.audio >= relayEnough {
				v.once.Do(func() { close(v.gotAll) })
			}
			v.mu.Unlock()
		}
	}})
	return v, err
}

// TestClusterStreamRelay: a stream (VP8 and Opus) published over WHIP on
// node a is watched by 20 WHEP viewers, 10 on node b and 10 on node c:
// every viewer gets a keyframe first and every payload intact, with
// sequence numbers and timestamps in step with the publisher's; each edge
// relays each track exactly once (parley_cluster_relays), and node a sends
// each track once whatever the number of edges. When c's viewers leave,
// c's relay stops and b's goes on; the stream ending on a ends it for the
// viewers on b, and every relay stops.
func TestClusterStreamRelay(t *testing.T) {
	a := mediaNode(t, "a", "embedded")
	b := mediaNode(t, "b", a.Cluster().ClientURL())
	c := mediaNode(t, "c", a.Cluster().ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	pub := publishRelayed(ctx, t, a.URL()+"/whip/tv", mintToken(t, "tv", auth.Grants{Publish: true}))
	ended := false
	defer func() {
		if !ended {
			pub.end()
		}
	}()
	waitFor(t, "the stream live on a and announced to the cluster", func() bool {
		r, ok := a.SFU().LookupRoom(sfu.Streams, "tv")
		return ok && len(r.Tracks()) == 2 && a.ClusterMedia().Stats().Streams.Load() == 1
	})

	token := mintToken(t, "tv", auth.Grants{Subscribe: true})
	viewers := make([]*relayViewer, 20)
	errs := make(chan error, len(viewers))
	for i := range viewers {
		edge := b
		if i%2 == 1 {
			edge = c
		}
		go func() {
			v, err := playRelayed(ctx, edge.URL()+"/whep/tv", token)
			viewers[i] = v
			errs <- err
		}()
	}
	for range viewers {
		if err := <-errs; err != nil {
			t.Fatalf("viewer: %v", err)
		}
	}
	for i, v := range viewers {
		select {
		case <-v.gotAll:
		case <-ctx.Done():
			v.mu.Lock()
			t.Fatalf("viewer %d got %d video and %d audio packets (err %v)", i, v.video, v.audio, v.err)
		}
		v.mu.Lock()
		if v.err != nil {
			t.Errorf("viewer %d: %v", i, v.err)
		}
		v.mu.Unlock()
	}

	admin := "Bearer " + mintToken(t, "*", auth.Grants{Admin: true})
	for _, n := range []struct {
		name string
		s    *server.Server
	}{{"b", b}, {"c", c}} {
		st := n.s.ClusterMedia().Stats()
		if r, s := st.Relays.Load(), st.RelaysStarted.Load(); r != 2 || s != 2 {
			t.Errorf("node %s relays %d tracks (%d started), want the stream's 2 once each for its 10 viewers", n.name, r, s)
		}
		_, _, metrics := do(t, "GET", n.s.OpsURL()+"/metrics", "", "Authorization", admin)
		if !strings.Contains(metrics, "parley_cluster_relays 2\n") {
			t.Errorf("node %s: /metrics lacks parley_cluster_relays 2", n.name)
		}
	}
	if st := a.ClusterMedia().Stats(); st.Sending.Load() != 2 || st.Relays.Load() != 0 {
		t.Errorf("origin a sends %d tracks and relays %d in, want 2 and 0", st.Sending.Load(), st.Relays.Load())
	}

	t.Logf("a sent %d packets (%d bytes) to NATS; b received %d, c %d; the publisher was asked for %d keyframes",
		a.ClusterMedia().Stats().PacketsOut.Load(), a.ClusterMedia().Stats().BytesOut.Load(),
		b.ClusterMedia().Stats().PacketsIn.Load(), c.ClusterMedia().Stats().PacketsIn.Load(), pub.plis.Load())

	// c's viewers leave: its relay stops (after its linger) while b's
	// goes on.
	for i := 1; i < len(viewers); i += 2 {
		viewers[i].sess.Close(ctx)
	}
	waitFor(t, "c's relay stopped after its last viewer left", func() bool {
		return c.ClusterMedia().Stats().Relays.Load() == 0
	})
	if r := b.ClusterMedia().Stats().Relays.Load(); r != 2 {
		t.Errorf("b relays %d tracks after c's viewers left, want 2", r)
	}

	// The stream ends on a: the viewers on b see it end, and the relays
	// stop.
	pub.end()
	ended = true
	for i := 0; i < len(viewers); i += 2 {
		v := viewers[i]
		select {
		case <-v.ended:
		case <-ctx.Done():
			t.Fatalf("viewer %d still has the stream after it ended on a", i)
		}
		v.sess.Close(ctx)
	}
	waitFor(t, "the relays stopped on b and c and a sending nothing", func() bool {
		return b.ClusterMedia().Stats().Relays.Load() == 0 && c.ClusterMedia().Stats().Relays.Load() == 0 &&
			a.ClusterMedia().Stats().Sending.Load() == 0
	})
}

// TestClusterGroupRoom: a group (sfu) room with members on three nodes:
// alice publishes on a, bob on b, carol only watches on c. Everyone
// receives every other member's video, relayed once per track and node
// pair; carol's track list names alice and bob as the publishers, and
// every node counts the three members.
func TestClusterGroupRoom(t *testing.T) {
	a := mediaNode(t, "a", "embedded")
	b := mediaNode(t, "b", a.Cluster().ClientURL())
	c := mediaNode(t, "c", a.Cluster().ClientURL())
	waitCluster(t, "every node listing a, b and c", []*server.Server{a, b, c}, func() bool {
		return len(a.Cluster().Nodes()) == 3 && len(b.Cluster().Nodes()) == 3 && len(c.Cluster().Nodes()) == 3
	})
	tok := mintToken(t, "grp", auth.Grants{Publish: true, Subscribe: true})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	publish := func(m *sfuMember) {
		track := m.publish()
		wg.Add(1)
		go func() { // 30 fps of keyframes: forwarded at once
			defer wg.Done()
			tickUntil(stop, 33*time.Millisecond, func(n uint32) {
				_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(n), Timestamp: n * 3000}, Payload: vp8Keyframe})
			})
		}()
	}
	receives := func(m *sfuMember, from string) {
		t.Helper()
		select {
		case tr := <-m.got:
			if tr.Codec().MimeType != webrtc.MimeTypeVP8 {
				t.Fatalf("%s got %s", m.id, tr.Codec().MimeType)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never received %s's video", m.id, from)
		}
	}
	// One step after the other, so that no member's own offer meets the
	// server's (the test client's glare handling is simpler than a
	// browser's perfect negotiation).
	alice := joinSFUAs(t, a.URL(), "grp", "alice", tok)
	publish(alice)
	bob := joinSFUAs(t, b.URL(), "grp", "bob", tok)
	receives(bob, "alice")
	publish(bob)
	receives(alice, "bob")
	carol := joinSFUAs(t, c.URL(), "grp", "carol", tok)
	receives(carol, "alice or bob")
	receives(carol, "alice or bob")
	waitFor(t, "packets at every member", func() bool {
		return alice.packets.Load() > 10 && bob.packets.Load() > 10 && carol.packets.Load() > 20
	})
	// carol's track list names alice and bob as the publishers, as a
	// browser shows them.
	waitFor(t, "carol's track list naming alice and bob", func() bool {
		select {
		case list := <-carol.tracks:
			raw, _ := json.Marshal(list)
			return len(list) == 2 && strings.Contains(string(raw), alice.id) && strings.Contains(string(raw), bob.id)
		default:
			return false
		}
	})
	// Every node counts the three members (its own and the others').
	admin := "Bearer " + mintToken(t, "*", auth.Grants{Admin: true})
	for _, s := range []*server.Server{a, b, c} {
		waitFor(t, "three members on every node", func() bool {
			_, _, body := do(t, "GET", s.OpsURL()+"/api/status", "", "Authorization", admin)
			var st struct{ Members int }
			return json.Unmarshal([]byte(body), &st) == nil && st.Members == 3
		})
	}
	// Per track and node pair one relay: a relays bob's track in, b
	// alice's, c both.
	for _, n := range []struct {
		name string
		s    *server.Server
		want int64
	}{{"a", a, 1}, {"b", b, 1}, {"c", c, 2}} {
		if r := n.s.ClusterMedia().Stats().Relays.Load(); r != n.want {
			t.Errorf("node %s relays %d tracks in, want %d", n.name, r, n.want)
		}
	}
}

// Players on a node without the stream: an LL-HLS player's first request
// starts the relay from the origin, as a WHEP viewer's does, and ffprobe
// reads the stream (H.264 and Opus) from the edge's playlist; on the other
// edge an RTSP reader's DESCRIBE starts it, and RTMP (H.264 and AAC) and
// SRT readers get it too; each edge relays each track once.
func TestClusterPlayersOnEdge(t *testing.T) {
	a := mediaNode(t, "a", "embedded")
	b := mediaNode(t, "b", a.Cluster().ClientURL())
	c := mediaNode(t, "c", a.Cluster().ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishH264(ctx, t, a, "tv", mintToken(t, "tv", auth.Grants{Publish: true}))
	waitTracks(ctx, t, a, "tv", 2)
	waitFor(t, "the stream announced to the cluster", func() bool { return a.ClusterMedia().Stats().Streams.Load() == 1 })
	probeHLS(ctx, t, b.URL()+"/hls/tv/index.m3u8?token="+mintToken(t, "tv", auth.Grants{Subscribe: true}), 640, 360, "opus")
	if r := b.ClusterMedia().Stats().Relays.Load(); r != 2 {
		t.Errorf("node b relays %d tracks for its HLS player, want the stream's 2", r)
	}
	read := mintToken(t, "tv", auth.Grants{Subscribe: true})
	if r := c.ClusterMedia().Stats().Relays.Load(); r != 0 {
		t.Fatalf("node c relays %d tracks before any reader asked", r)
	}
	probeRTSP(ctx, t, fmt.Sprintf("rtsp://%s/tv?token=%s", c.RTSPAddr(), read), "tcp", "h264", "opus")
	got, err := rtmptest.Probe(ctx, fmt.Sprintf("rtmp://%s/live/tv?token=%s", c.RTMPAddr(), read))
	if want := []string{"aac", "h264"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("RTMP reader on node c: %v (%v), want %v", got, err, want)
	}
	got, err = rtmptest.Probe(ctx, srtURL(b, "read:tv:"+read))
	if want := []string{"h264", "opus"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("SRT reader on node b: %v (%v), want %v", got, err, want)
	}
	for _, n := range []*server.Server{b, c} {
		if r := n.ClusterMedia().Stats().Relays.Load(); r != 2 {
			t.Errorf("an edge relays %d tracks for its readers, want the stream's 2 (one relay per track per node)", r)
		}
	}
}
