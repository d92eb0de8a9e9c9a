package turn

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestWebRTCThroughRelay connects two pion PeerConnections that may only
// use relay candidates from this server and passes a data-channel message.
func TestWebRTCThroughRelay(t *testing.T) {
	s := startServer(t, nil)
	offerer := newRelayPC(t, s, "offerer")
	answerer := newRelayPC(t, s, "answerer")

	got := make(chan string, 1)
	answerer.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case got <- string(m.Data):
			default:
			}
		})
	})
	dc, err := offerer.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc.OnOpen(func() { _ = dc.SendText("hello via TURN") })
	signal(t, offerer, answerer)

	select {
	case msg := <-got:
		if msg != "hello via TURN" {
			t.Fatalf("got %q", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no data-channel message within 10s")
	}
	for _, pc := range []*webrtc.PeerConnection{offerer, answerer} {
		pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			t.Fatalf("selected pair: %v %v", pair, err)
		}
		if pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Remote.Typ != webrtc.ICECandidateTypeRelay {
			t.Fatalf("selected pair is not relay/relay: %s", pair)
		}
	}
	if st := s.Stats(); st.Allocations < 2 || st.RelayedPackets == 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// newRelayPC makes a PeerConnection restricted to TURN relay candidates of s.
func newRelayPC(t *testing.T, s *Server, user string) *webrtc.PeerConnection {
	t.Helper()
	var servers []webrtc.ICEServer
	for _, is := range s.ICEServers("127.0.0.1", user, time.Hour) {
		servers = append(servers, webrtc.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{
		ICEServers:         servers,
		ICETransportPolicy: webrtc.ICETransportPolicyRelay,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// signal exchanges offer and answer with all candidates gathered, so no
// trickle plumbing is needed.
func signal(t *testing.T, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}
