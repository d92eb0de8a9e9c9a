package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/pkg/client"
)

// whipExchange offers pc to url (WHIP or WHEP) with all candidates, and
// applies the answer.
func whipExchange(t *testing.T, pc *webrtc.PeerConnection, url string) {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	pc.SetLocalDescription(offer)
	<-gathered
	resp, err := http.Post(url, "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("%s: %s: %s", url, resp.Status, body)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
}

func TestStreamStatusCountsViewers(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	status := func() (st struct {
		Live    bool
		Viewers int
	}) {
		json.Unmarshal([]byte(get(t, srv.URL()+"/api/streams/live1")), &st)
		return st
	}
	if st := status(); st.Live || st.Viewers != 0 {
		t.Fatalf("before publishing: %+v", st)
	}
	api, _ := client.LoopbackAPI()
	pub, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer pub.Close()
	track, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub")
	pub.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	whipExchange(t, pub, srv.URL()+"/whip/live1")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(33 * time.Millisecond):
			}
			track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, Payload: vp8Keyframe})
		}
	}()
	waitFor(t, "stream live", func() bool { return status().Live })
	for i := 0; i < 2; i++ {
		v, _ := api.NewPeerConnection(webrtc.Configuration{})
		defer v.Close()
		v.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		whipExchange(t, v, srv.URL()+"/whep/live1")
	}
	waitFor(t, "two viewers", func() bool { return status().Viewers == 2 })
	resp, _ := http.Get(srv.URL() + "/api/streams/bad%20name")
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad name: %s", resp.Status)
	}
}
