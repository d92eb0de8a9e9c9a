package sfu

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// member is a pion client driven the way the WebSocket layer drives a
// Participant: client offers to publish, server offers to deliver others'
// tracks.
type member struct {
	*testSubscriber
	video *webrtc.TrackLocalStaticRTP
	errs  chan error // signaling errors from callbacks (never t.Error off the test goroutine)
}

func joinMember(t *testing.T, s *SFU, room, id string) *member {
	t.Helper()
	ts := newSubscriberPC(t)
	part, err := s.Join(Calls, room, ParticipantOptions{ID: id, AutoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	ts.part = part
	m := &member{testSubscriber: ts, errs: make(chan error, 16)}
	part.OnLocalOffer(func(sdp string) {
		go func() {
			if err := answerServer(ts.pc, part, sdp); err != nil {
				select {
				case m.errs <- fmt.Errorf("%s: answering server offer: %w", id, err):
				default:
				}
			}
		}()
	})
	return m
}

// publish adds a VP8 track and offers it, retrying on glare.
func (m *member) publish(t *testing.T) {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", m.part.ID())
	if err != nil {
		t.Fatal(err)
	}
	m.video = tr
	if _, err := m.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	for try := 0; ; try++ {
		if m.pc.SignalingState() != webrtc.SignalingStateStable {
			time.Sleep(20 * time.Millisecond) // a server offer is being answered
			continue
		}
		offer, err := m.pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		answer, err := m.part.HandleOffer(context.Background(), offer.SDP)
		if errors.Is(err, ErrGlare) && try < 50 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := m.pc.SetLocalDescription(offer); err != nil {
			t.Fatal(err)
		}
		if err := m.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatal(err)
		}
		return
	}
}

func (m *member) send(ctx context.Context, t testing.TB) {
	tp := &testPublisher{t: t, video: []*webrtc.TrackLocalStaticRTP{m.video}, seq: []uint16{1}, level: 127}
	tk := time.NewTicker(33 * time.Millisecond)
	defer tk.Stop()
	for i := 0; ; i++ {
		tp.sendFrame(2, i%30 == 0)
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// TestRoomMembersSeeEachOther: two renegotiating members publish and each
// receives the other's video; explicit unsubscribe removes it again.
func TestRoomMembersSeeEachOther(t *testing.T) {
	s := newTestSFU(t)
	a := joinMember(t, s, "meet", "alice")
	b := joinMember(t, s, "meet", "bob")
	a.publish(t)
	b.publish(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.send(ctx, t)
	go b.send(ctx, t)
	for _, m := range []*member{a, b} {
		m.waitFor(8*time.Second, m.part.ID()+" receives the other's video", func() bool { return len(m.pkts["video"]) >= 30 })
	}
	for _, m := range []*member{a, b} {
		select {
		case err := <-m.errs:
			t.Fatal(err)
		default:
		}
	}
	room, _ := s.LookupRoom(Calls, "meet")
	if n := len(room.Tracks()); n != 2 {
		t.Fatalf("room tracks: %d", n)
	}
	if err := a.part.Unsubscribe("nobody/cam"); !errors.Is(err, ErrNoSuchTrack) {
		t.Fatalf("unsubscribe unknown track: %v", err)
	}
	if err := a.part.Unsubscribe("bob/cam"); err != nil {
		t.Fatal(err)
	}
	a.waitFor(5*time.Second, "alice's copy of bob's track ends", func() bool { return a.ended["video"] })
	if st := a.part.Stats(); st.Subscribed != 0 || st.Published != 1 {
		t.Fatalf("alice stats %+v", st)
	}
}
