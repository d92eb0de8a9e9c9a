package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

func startServer(t *testing.T, mod func(*config.Config)) *server.Server {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP = "127.0.0.1:0"
	cfg.TURN = "127.0.0.1:0"
	cfg.TURNTLS = "127.0.0.1:0"
	cfg.TURNAllow = []string{"127.0.0.0/8"}
	cfg.MediaUDP, cfg.MediaTCP = "127.0.0.1:0", "off"
	cfg.RTMP = "127.0.0.1:0"
	cfg.RTSP, cfg.SRT = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Ops = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// peer is a pion PeerConnection driven through Parley signaling.
type peer struct {
	t   *testing.T
	c   *client.Client
	pc  *webrtc.PeerConnection
	id  string
	got chan []byte // RTP payloads received
	msg chan string // data-channel messages received
}

func newPeer(t *testing.T, url, transport, room, name string, relayOnly bool) *peer {
	t.Helper()
	return newPeerToken(t, url, transport, room, name, "", relayOnly)
}

// newPeerToken is newPeer joining with a token (servers with auth).
func newPeerToken(t *testing.T, url, transport, room, name, token string, relayOnly bool) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, &client.Options{Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	j, err := c.Join(ctx, room, name, token)
	if err != nil {
		t.Fatal(err)
	}
	urls := 0
	for _, s := range j.ICEServers {
		urls += len(s.URLs)
	}
	if urls < 3 {
		t.Fatalf("joined without ICE servers: %+v", j.ICEServers)
	}
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := client.NewPeerConnection(api, j.ICEServers, relayOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	p := &peer{t: t, c: c, pc: pc, id: j.ID, got: make(chan []byte, 100), msg: make(chan string, 10)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case p.got <- pkt.Payload:
			default:
			}
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) { p.msg <- string(m.Data) })
	})
	return p
}

type sdpOrCandidate struct {
	SDP       *webrtc.SessionDescription `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
}

// wire relays this peer's candidates to remote and applies what arrives.
func (p *peer) wire(remote string) {
	p.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			init := c.ToJSON()
			p.c.Signal(context.Background(), remote, sdpOrCandidate{Candidate: &init})
		}
	})
	go func() {
		// Candidates can overtake the description they belong to (the
		// sender's trickle races its own offer, and HTTP posts may be
		// reordered): keep them until there is a remote description.
		var pending []webrtc.ICECandidateInit
		flush := func() {
			for _, c := range pending {
				p.pc.AddICECandidate(c)
			}
			pending = nil
		}
		for m := range p.c.Events() {
			if m.Type != protocol.TypeSignal {
				continue
			}
			var s sdpOrCandidate
			if err := json.Unmarshal(m.Data, &s); err != nil {
				continue
			}
			switch {
			case s.Candidate != nil && p.pc.RemoteDescription() == nil:
				pending = append(pending, *s.Candidate)
			case s.Candidate != nil:
				p.pc.AddICECandidate(*s.Candidate)
			case s.SDP != nil && s.SDP.Type == webrtc.SDPTypeOffer:
				p.pc.SetRemoteDescription(*s.SDP)
				flush()
				ans, _ := p.pc.CreateAnswer(nil)
				p.pc.SetLocalDescription(ans)
				p.c.Signal(context.Background(), m.From, sdpOrCandidate{SDP: &ans})
			case s.SDP != nil:
				p.pc.SetRemoteDescription(*s.SDP)
				flush()
			}
		}
	}()
}

func callThrough(t *testing.T, transport string, relayOnly bool) {
	srv := startServer(t, nil)
	room := "call-" + transport
	a := newPeer(t, srv.URL(), transport, room, "alice", relayOnly)
	b := newPeer(t, srv.URL(), transport, room, "bob", relayOnly)
	callPeers(t, srv, a, b, relayOnly)
}

// callPeers: a, in the room first, calls b, who just joined; with
// relayOnly, srv's TURN must have relayed it.
func callPeers(t *testing.T, srv *server.Server, a, b *peer, relayOnly bool) {
	// alice is told bob joined: the existing member makes the offer.
	var bobID string
	select {
	case m := <-a.c.Events():
		if m.Type != protocol.TypePeerJoined {
			t.Fatalf("alice got %s", m.Type)
		}
		bobID = m.ID
	case <-time.After(5 * time.Second):
		t.Fatal("no peer-joined")
	}
	a.wire(bobID)
	b.wire(a.id)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	dc, err := a.pc.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	offer, _ := a.pc.CreateOffer(nil)
	a.pc.SetLocalDescription(offer)
	a.c.Signal(context.Background(), bobID, sdpOrCandidate{SDP: &offer})

	select {
	case <-opened:
	case <-time.After(15 * time.Second):
		t.Fatalf("data channel never opened (ICE %s)", a.pc.ICEConnectionState())
	}
	dc.SendText("hello over parley")
	if got := <-b.msg; got != "hello over parley" {
		t.Fatalf("data channel: %q", got)
	}
	// Real Opus RTP: send until bob has received ten intact payloads.
	payload := []byte{0xfc, 0xff, 0xfe} // an Opus frame of silence
	deadline := time.After(10 * time.Second)
	received := 0
	for seq := uint16(0); received < 10; seq++ {
		track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 1}, Payload: payload})
		select {
		case got := <-b.got:
			if string(got) != string(payload) {
				t.Fatalf("payload %x", got)
			}
			received++
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("only %d RTP packets arrived", received)
		}
	}
	pair, err := selectedPair(a.pc)
	if err != nil {
		t.Fatal(err)
	}
	if relayOnly {
		if pair.Local.Typ != webrtc.ICECandidateTypeRelay {
			t.Fatalf("relay-only call used %s", pair.Local.Typ)
		}
		if st := srv.TURN().Stats(); st.RelayedPackets == 0 || st.Allocations == 0 {
			t.Fatalf("TURN stats show no relaying: %+v", st)
		}
	}
}

func selectedPair(pc *webrtc.PeerConnection) (*webrtc.ICECandidatePair, error) {
	sctp := pc.SCTP()
	if sctp == nil {
		return nil, errors.New("no SCTP transport")
	}
	return sctp.Transport().ICETransport().GetSelectedCandidatePair()
}

func TestCallOverWebSocket(t *testing.T) { callThrough(t, client.WebSocket, false) }
func TestCallOverHTTP(t *testing.T)      { callThrough(t, client.HTTP, false) }
func TestCallRelayOnly(t *testing.T)     { callThrough(t, client.WebSocket, true) }
func TestCallRelayOnlyHTTP(t *testing.T) { callThrough(t, client.HTTP, true) }

func TestHealthAndMetrics(t *testing.T) {
	srv := startServer(t, nil)
	c := newPeer(t, srv.URL(), client.WebSocket, "m", "x", false)
	c.c.SendRaw(context.Background(), []byte("nope"))
	<-c.c.Events()
	body := get(t, srv.URL()+"/healthz")
	if !strings.Contains(body, `"status":"ok"`) || !strings.Contains(body, `"members":1`) {
		t.Fatalf("healthz: %s", body)
	}
	m := get(t, srv.OpsURL()+"/metrics")
	for _, want := range []string{"parley_rooms 1", "parley_room_members 1", `parley_signal_errors_total{code="bad-json"} 1`, "parley_turn_allocations ", "parley_turn_relayed_bytes_total "} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	return string(b)
}

func TestGracefulShutdownReleasesTURN(t *testing.T) {
	srv := startServer(t, nil)
	turnAddr := srv.TURN().UDPAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The ports are free again: a new server can bind the same TURN address.
	srv2 := startServer(t, func(c *config.Config) { c.TURN = turnAddr })
	if got := srv2.TURN().UDPAddr().String(); got != turnAddr {
		t.Fatal(fmt.Sprintf("rebound %s, want %s", got, turnAddr))
	}
}
