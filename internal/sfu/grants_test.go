package sfu

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// sectionDirection is the direction attribute of the section with mid.
func sectionDirection(sdp, mid string) string {
	for _, sec := range strings.Split(sdp, "m=")[1:] {
		if !strings.Contains(sec, "a=mid:"+mid+"\r\n") {
			continue
		}
		for _, d := range []string{"sendrecv", "sendonly", "recvonly", "inactive"} {
			if strings.Contains(sec, "a="+d+"\r\n") {
				return d
			}
		}
	}
	return ""
}

// A participant without publish: its sending sections are answered
// inactive (recvonly for sendrecv), and no track of its is published.
func TestWithoutSendingAnswersInactive(t *testing.T) {
	s := newTestSFU(t)
	p, err := s.Join(Calls, "g", ParticipantOptions{ID: "viewer", AutoSubscribe: true, NoPublish: true})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	track, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	a, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "s")
	if _, err := pc.AddTrack(a); err != nil { // sendrecv
		t.Fatal(err)
	}
	offer, _ := pc.CreateOffer(nil)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	rewritten, n, err := WithoutSending(offer.SDP)
	if err != nil || n != 2 {
		t.Fatalf("rewrote %d sections: %v", n, err)
	}
	if strings.Contains(rewritten, "a=msid:") || strings.Contains(rewritten, "a=ssrc:") {
		t.Fatalf("sending details left:\n%s", rewritten)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := p.HandleOffer(ctx, rewritten)
	if err != nil {
		t.Fatal(err)
	}
	if d := sectionDirection(answer, "0"); d != "inactive" {
		t.Fatalf("sendonly section answered %s:\n%s", d, answer)
	}
	if d := sectionDirection(answer, "1"); d != "inactive" && d != "sendonly" {
		t.Fatalf("sendrecv section answered %s:\n%s", d, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("the answer does not fit the original offer: %v", err)
	}
	if same, n, _ := WithoutSending(rewritten); n != 0 || same != rewritten {
		t.Fatal("rewriting twice changed the offer")
	}
}

// A held (moderator-muted) track is read but not forwarded; released, its
// subscribers go on from the next keyframe, with continuous numbering.
func TestHoldTrack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newTestSFU(t)
	ms := newMemStream(t, s, "hold")
	ms.send(t, true)
	room, _ := s.LookupRoom(Streams, "hold")
	sink := newMemSink()
	if _, err := room.Subscribe(ms.pub.ID(), sink, SinkOptions{SSRC: 7, PayloadType: 100}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		ms.send(t, false)
	}
	sink.waitFor(ctx, t, 11, "before the hold")
	changed := room.Changed()
	if ti, err := room.HoldTrack(ms.pub.ID(), true); err != nil || !ti.Muted || !room.Tracks()[0].Muted {
		t.Fatalf("hold: %+v %v", ti, err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("the track list did not change")
	}
	held := map[uint32]bool{}
	for range 20 {
		held[ms.send(t, false)] = true
	}
	held[ms.send(t, true)] = true // a keyframe while held goes nowhere either
	plis := ms.src.plis.Load()
	if _, err := room.HoldTrack(ms.pub.ID(), false); err != nil {
		t.Fatal(err)
	}
	ms.send(t, false) // the subscriber waits for a keyframe and asks for one
	for ms.src.plis.Load() == plis {
		select {
		case <-ctx.Done():
			t.Fatal("no keyframe request after the release")
		case <-time.After(10 * time.Millisecond):
		}
		ms.send(t, false)
	}
	key := ms.send(t, true)
	sink.waitFor(ctx, t, 12, "after the release")
	got := sink.packets()
	for _, p := range got {
		if held[p.counter] {
			t.Fatalf("packet %d sent while held", p.counter)
		}
	}
	if p := got[11]; p.counter != key || !p.key {
		t.Fatalf("resumed on packet %d (keyframe %v), want keyframe %d", p.counter, p.key, key)
	}
	checkContinuous(t, "held sink", got)
	if _, err := room.HoldTrack("nope", true); !errors.Is(err, ErrNoSuchTrack) {
		t.Fatalf("unknown track: %v", err)
	}
}
