package sfusignal

import (
	"encoding/json"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// offerFrom makes an offer on a new client connection (or pc, when given).
func offerFrom(t *testing.T, pc *webrtc.PeerConnection, o *webrtc.OfferOptions) (*webrtc.PeerConnection, json.RawMessage) {
	t.Helper()
	if pc == nil {
		api, err := client.LoopbackAPI()
		if err != nil {
			t.Fatal(err)
		}
		if pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		negotiated, id := true, uint16(0)
		if _, err := pc.CreateDataChannel("parley", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(o)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(map[string]any{"sdp": map[string]string{"type": "offer", "sdp": offer.SDP}})
	return pc, raw
}

func (r *recorder) types() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{}
	for _, m := range r.out {
		n[m.Type]++
	}
	return n
}

// When the server closes the member's participant, the member is told
// media-closed; offers still made by the closed connection and other
// media messages are refused with media-closed, and an offer from a new
// connection gets a new participant.
func TestMediaClosedTakesNewConnection(t *testing.T) {
	ms, rec := newSession(t, auth.AllGrants)
	pc1, offer := offerFrom(t, nil, nil)
	ms.Handle(offer)
	if _, sdps := rec.take(); sdps != 1 {
		t.Fatal("no answer to the first offer")
	}
	ms.mu.Lock()
	p1 := ms.p
	ms.mu.Unlock()
	p1.Close() // as the server does when ICE or DTLS fail
	if n := rec.types()[protocol.TypeMediaClosed]; n != 1 {
		t.Fatalf("%d media-closed messages", n)
	}
	rec.take()
	_, restart := offerFrom(t, pc1, &webrtc.OfferOptions{ICERestart: true})
	for _, raw := range []json.RawMessage{restart, json.RawMessage(`{"maxBitrate":1}`), json.RawMessage(`{"sdp":{"type":"answer","sdp":"v=0"}}`)} {
		ms.Handle(raw)
		if errs, sdps := rec.take(); sdps != 0 || len(errs) != 1 || errs[0] != CodeMediaClosed {
			t.Fatalf("%.40s after media-closed: errors %v, %d SDPs", raw, errs, sdps)
		}
	}
	_, fresh := offerFrom(t, nil, nil)
	ms.Handle(fresh)
	if errs, sdps := rec.take(); sdps != 1 || len(errs) != 0 {
		t.Fatalf("a new connection's offer: errors %v, %d SDPs", errs, sdps)
	}
	ms.mu.Lock()
	p2 := ms.p
	ms.mu.Unlock()
	if p2 == nil || p2 == p1 || p2.ID() != "member" {
		t.Fatal("no new participant for the member")
	}
	// Closing the session closes the participant without media-closed.
	ms.Close()
	if n := rec.types()[protocol.TypeMediaClosed]; n != 0 {
		t.Fatalf("media-closed on the member's own leave")
	}
}

// Without publish, an offer's sending sections are answered inactive and
// the member is told which grant it lacks; without subscribe, preferences
// are refused.
func TestGrantsRefuseParts(t *testing.T) {
	ms, rec := newSession(t, auth.Grants{})
	api, _ := client.LoopbackAPI()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	_, offer := offerFrom(t, pc, nil)
	ms.Handle(offer) // only a sending section: nothing to answer
	if errs, sdps := rec.take(); sdps != 0 || len(errs) != 1 || errs[0] != CodeForbidden {
		t.Fatalf("sending-only offer without publish: errors %v, %d SDPs", errs, sdps)
	}
	negotiated, id := true, uint16(0)
	if _, err := pc.CreateDataChannel("parley", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id}); err != nil {
		t.Fatal(err)
	}
	_, offer = offerFrom(t, pc, nil)
	ms.Handle(offer) // and a data channel: answered, and told
	if errs, sdps := rec.take(); sdps != 1 || len(errs) != 1 || errs[0] != CodeForbidden {
		t.Fatalf("offer without publish: errors %v, %d SDPs", errs, sdps)
	}
	ms.Handle(json.RawMessage(`{"subscribe":{"track":"x","quality":"low"}}`))
	if errs, _ := rec.take(); len(errs) != 1 || errs[0] != CodeForbidden {
		t.Fatalf("subscribe without the grant: %v", errs)
	}
}
