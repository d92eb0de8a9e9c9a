package sfu

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestICETCP connects a client over ICE-TCP only, on the same port number
// as the UDP mux.
func TestICETCP(t *testing.T) {
	s, err := New(Config{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", PublicIP: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.TCPAddr().(*net.TCPAddr).Port != s.UDPAddr().(*net.UDPAddr).Port {
		t.Fatalf("tcp %v, udp %v: want the same port", s.TCPAddr(), s.UDPAddr())
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.CreateDataChannel("probe", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	part, err := s.Join(Streams, "tcp", ParticipantOptions{OneShot: true})
	if err != nil {
		t.Fatal(err)
	}
	offer, _ := pc.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	answer, err := part.HandleOffer(ctx, pc.LocalDescription().SDP)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
		pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil || pair.Local.Protocol != webrtc.ICEProtocolTCP {
			t.Fatalf("selected pair %v (%v), want TCP", pair, err)
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("no ICE-TCP connection; answer:\n%s", answer)
	}
}
