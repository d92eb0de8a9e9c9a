package sfu

import (
	"context"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// checkInOrder verifies that video packets arrive with consecutive sequence
// numbers and intact payload counters, starting at a keyframe.
func checkInOrder(t *testing.T, name string, pkts []*rtp.Packet) {
	t.Helper()
	if len(pkts) == 0 {
		t.Fatalf("%s: no video", name)
	}
	if !vp8KeyframeStart(pkts[0].Payload) {
		t.Errorf("%s: first video packet is not a keyframe start", name)
	}
	for i := 1; i < len(pkts); i++ {
		if pkts[i].SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("%s: seq %d after %d", name, pkts[i].SequenceNumber, pkts[i-1].SequenceNumber)
		}
		if counterOf(pkts[i]) != counterOf(pkts[i-1])+1 {
			t.Fatalf("%s: payload counter %d after %d", name, counterOf(pkts[i]), counterOf(pkts[i-1]))
		}
		if len(pkts[i].Payload) != len(pkts[0].Payload) {
			t.Fatalf("%s: payload length %d", name, len(pkts[i].Payload))
		}
	}
}

func TestFanOutToThreeSubscribers(t *testing.T) {
	s := newTestSFU(t)
	pub := newTestPublisher(t, s, "r1", pubOpts{audio: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.run(ctx, 1000) // only the first frame is a keyframe unless PLI'd

	room, _ := s.LookupRoom(Streams, "r1")
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	if n := room.WaitTracks(wctx, 2); n != 2 {
		t.Fatalf("published tracks: %d", n)
	}
	wcancel()

	subs := []*testSubscriber{joinWHEP(t, s, "r1", QualityHigh), joinWHEP(t, s, "r1", QualityHigh)}
	// The third joins late: once the first two are receiving video.
	for _, sub := range subs {
		sub.waitFor(5*time.Second, "the first video packets", func() bool { return len(sub.pkts["video"]) >= 10 })
	}
	subs = append(subs, joinWHEP(t, s, "r1", QualityHigh)) // late joiner
	for i, sub := range subs {
		sub.waitFor(5*time.Second, "60 video packets", func() bool { return len(sub.pkts["video"]) >= 60 && len(sub.pkts["audio"]) >= 10 })
		checkInOrder(t, "subscriber "+string(rune('A'+i)), sub.video())
	}
	st := s.Stats()
	if st.Participants != 4 || st.Tracks != 2 || st.DownTracks != 6 || st.Forwarded == 0 || st.Received == 0 || st.PLIs == 0 {
		t.Errorf("stats: %+v", st)
	}

	// Publisher leaves: the one-shot subscribers (which cannot renegotiate
	// and here keep no idle subscriptions) are closed, which ends their
	// tracks.
	pub.part.Close()
	cancel()
	for _, sub := range subs {
		select {
		case <-sub.part.Done():
		case <-time.After(6 * time.Second):
			t.Fatal("subscriber not closed after publisher left")
		}
		// The client learns it from the DTLS close (track reads end) or, if
		// that datagram is lost, from ICE (the connection leaves "connected").
		sub.waitFor(10*time.Second, "track end or disconnect", func() bool {
			return sub.ended["video"] || sub.pc.ConnectionState() != webrtc.PeerConnectionStateConnected
		})
	}
}
