package sfu

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// dropper drops the first copy of every 17th video packet, so the client's
// NACK generator (which sits above it) asks for a retransmission.
type dropper struct {
	interceptor.NoOp
	mu      sync.Mutex
	seen    map[uint16]bool
	dropped atomic.Int64
}

type dropperFactory struct{ d *dropper }

func (f dropperFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.d, nil }

func (d *dropper) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if info.MimeType != webrtc.MimeTypeVP8 {
		return r
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := r.Read(b, a)
			if err != nil || n < 4 {
				return n, attr, err
			}
			seq := uint16(b[2])<<8 | uint16(b[3])
			d.mu.Lock()
			drop := seq%17 == 5 && !d.seen[seq]
			d.seen[seq] = true
			d.mu.Unlock()
			if !drop {
				return n, attr, err
			}
			d.dropped.Add(1)
		}
	})
}

// TestNACKRecoversDroppedPackets: a subscriber that NACKs gets every lost
// packet again, on its RTX stream when it negotiated RTX (its own SSRC,
// payload type and sequence numbers, the original number in the payload)
// and as a plain retransmission when it did not.
func TestNACKRecoversDroppedPackets(t *testing.T) {
	for _, rtx := range []bool{true, false} {
		name := "RTX"
		if !rtx {
			name = "plain"
		}
		t.Run(name, func(t *testing.T) { testNACKRecovers(t, rtx) })
	}
}

// vp8OpusOnly registers VP8 and Opus without RTX, like a client that does
// not offer RTX.
func vp8OpusOnly(me *webrtc.MediaEngine) error {
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "transport-cc"}}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		return err
	}
	return me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}, webrtc.RTPCodecTypeAudio)
}

func testNACKRecovers(t *testing.T, rtx bool) {
	s := newTestSFU(t)
	runPublisher(t, s, "nack", pubOpts{}, 1)

	d := &dropper{seen: map[uint16]bool{}}
	codecs := (*webrtc.MediaEngine).RegisterDefaultCodecs
	if !rtx {
		codecs = vp8OpusOnly
	}
	sub := joinWHEPOn(t, s, "nack", ParticipantOptions{}, newSubscriberPCWith(t, clientAPIWith(t, codecs, dropperFactory{d})))
	sub.waitFor(5*time.Second, "150 video packets", func() bool { return len(sub.pkts["video"]) >= 150 })
	// Everything but the last 30 packets (~300 ms) received so far must be
	// completed by retransmissions: wait for them rather than for a while.
	pkts := sub.video()
	first, end := pkts[0].SequenceNumber, pkts[len(pkts)-1].SequenceNumber-30
	missingOf := func(pkts []*rtp.Packet) []uint16 {
		got := map[uint16]bool{}
		for _, p := range pkts {
			got[p.SequenceNumber] = true
		}
		var missing []uint16
		for q := first; q != end; q++ {
			if !got[q] {
				missing = append(missing, q)
			}
		}
		return missing
	}
	if d.dropped.Load() == 0 {
		t.Fatal("dropper dropped nothing")
	}
	// Woken by every packet that arrives (retransmissions included).
	sub.waitFor(10*time.Second, "retransmissions of every dropped packet", func() bool {
		return len(missingOf(sub.pkts["video"])) == 0
	})
	if st := s.Stats(); st.NACKAnswered == 0 {
		t.Fatalf("no NACK answered: %+v", st)
	}
	sub.mu.Lock()
	got := sub.rtx["video"]
	sub.mu.Unlock()
	if rtx && (got == 0 || s.Stats().NACKOnRTX == 0) {
		t.Fatalf("retransmissions did not come on the RTX stream: %+v", s.Stats())
	}
	if !rtx && got != 0 {
		t.Fatalf("%d packets on an RTX stream the subscriber did not negotiate", got)
	}
}

func TestSimulcastLayerSelection(t *testing.T) {
	s := newTestSFU(t)
	pub := newTestPublisher(t, s, "sim", pubOpts{rids: []string{"q", "h", "f"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.run(ctx, 1000)
	room, _ := s.LookupRoom(Streams, "sim")
	deadline := time.Now().Add(5 * time.Second)
	for {
		ts := room.Tracks()
		if len(ts) == 1 && len(ts[0].Layers) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("simulcast layers not published: %+v", ts)
		}
		time.Sleep(20 * time.Millisecond)
	}

	low := joinWHEP(t, s, "sim", QualityLow)
	high := joinWHEP(t, s, "sim", QualityHigh)
	low.waitFor(5*time.Second, "low layer", func() bool { return len(low.pkts["video"]) >= 60 })
	high.waitFor(5*time.Second, "high layer", func() bool { return len(high.pkts["video"]) >= 60 })
	for _, p := range low.video() {
		if p.Payload[6] != 0 {
			t.Fatalf("low-quality subscriber got layer %d", p.Payload[6])
		}
	}
	hv := high.video()
	if hv[len(hv)-1].Payload[6] != 2 {
		t.Fatalf("high-quality subscriber on layer %d", hv[len(hv)-1].Payload[6])
	}

	// Lower the high subscriber's estimate: it must move down on a keyframe,
	// with continuous sequence numbers.
	time.Sleep(1100 * time.Millisecond) // layer bitrates are measured per second
	high.part.SetMaxBitrate(200_000)
	high.waitFor(5*time.Second, "switch down", func() bool {
		v := high.pkts["video"]
		return len(v) > 0 && v[len(v)-1].Payload[6] == 0
	})
	hv = high.video()
	for i := 1; i < len(hv); i++ {
		if hv[i].SequenceNumber != hv[i-1].SequenceNumber+1 {
			t.Fatalf("sequence gap at layer switch: %d -> %d", hv[i-1].SequenceNumber, hv[i].SequenceNumber)
		}
		if hv[i].Payload[6] != hv[i-1].Payload[6] {
			if !vp8KeyframeStart(hv[i].Payload) {
				t.Fatalf("switched layer %d -> %d on a non-keyframe", hv[i-1].Payload[6], hv[i].Payload[6])
			}
			if int32(hv[i].Timestamp-hv[i-1].Timestamp) <= 0 {
				t.Fatalf("timestamp went back at switch")
			}
		}
	}

	// A per-participant cap works the same way, and lifting both limits
	// brings the subscriber back up to the top layer.
	high.part.SetMaxBitrate(0)
	high.part.SetMaxQuality(QualityMedium)
	high.waitFor(5*time.Second, "switch to the middle layer", func() bool {
		v := high.pkts["video"]
		return len(v) > 0 && v[len(v)-1].Payload[6] == 1
	})
	high.part.SetMaxQuality(QualityHigh)
	high.waitFor(5*time.Second, "switch back up", func() bool {
		v := high.pkts["video"]
		return len(v) > 0 && v[len(v)-1].Payload[6] == 2
	})
	hv = high.video()
	for i := 1; i < len(hv); i++ {
		if hv[i].SequenceNumber != hv[i-1].SequenceNumber+1 {
			t.Fatalf("sequence gap: %d -> %d", hv[i-1].SequenceNumber, hv[i].SequenceNumber)
		}
	}
}

func TestPublisherRestartIsSeamlessForViewers(t *testing.T) {
	s := newTestSFU(t)
	pub := newTestPublisher(t, s, "restart", pubOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	go pub.run(ctx, 30)
	room, _ := s.LookupRoom(Streams, "restart")
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	room.WaitTracks(wctx, 1)
	ended := make(chan TrackInfo, 1)
	sub := joinWHEPWith(t, s, "restart", ParticipantOptions{OnSourceEnded: func(ti TrackInfo) { ended <- ti }})
	sub.waitFor(5*time.Second, "first stream", func() bool { return len(sub.pkts["video"]) >= 30 })
	cancel()
	pub.part.Close()
	var old TrackInfo
	select {
	case old = <-ended:
	case <-wctx.Done():
		t.Fatal("the viewer was not told its track ended")
	}

	pub2 := newTestPublisher(t, s, "restart", pubOpts{})
	pub2.counter = 1_000_000
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go pub2.run(ctx2, 30)
	if room.WaitTracks(wctx, 1) != 1 {
		t.Fatal("the second publisher's track never came")
	}
	if err := sub.part.Reattach(old.ID, room.Tracks()[0].ID); err != nil {
		t.Fatal(err)
	}
	sub.waitFor(5*time.Second, "second stream", func() bool {
		v := sub.pkts["video"]
		return len(v) > 0 && counterOf(v[len(v)-1]) > 1_000_030
	})
	v := sub.video()
	for i := 1; i < len(v); i++ {
		if v[i].SequenceNumber != v[i-1].SequenceNumber+1 {
			t.Fatalf("sequence gap across restart: %d -> %d", v[i-1].SequenceNumber, v[i].SequenceNumber)
		}
		if v[i].SSRC != v[0].SSRC {
			t.Fatal("SSRC changed across restart")
		}
	}
	select {
	case <-sub.part.Done():
		t.Fatal("viewer closed despite the re-attach")
	default:
	}
}

func TestCodecMismatchIsReported(t *testing.T) {
	s := newTestSFU(t)
	pub := newTestPublisher(t, s, "codec", pubOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.run(ctx, 30)
	room, _ := s.LookupRoom(Streams, "codec")
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	room.WaitTracks(wctx, 1)

	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "packetization-mode=1;profile-level-id=42e01f"},
		PayloadType:        102,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, _ := pc.CreateOffer(nil)
	_ = pc.SetLocalDescription(offer)
	part, err := s.Join(Streams, "codec", ParticipantOptions{AutoSubscribe: true, OneShot: true})
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	_, err = part.HandleOffer(ctx, offer.SDP)
	var ce *CodecError
	if !errors.As(err, &ce) || !ce.Stream || ce.Supported[0] != webrtc.MimeTypeVP8 {
		t.Fatalf("want stream CodecError naming VP8, got %v", err)
	}
	t.Log(err)
}

func TestActiveSpeaker(t *testing.T) {
	s := newTestSFU(t)
	room, err := s.Room(Streams, "talk")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	room.OnActiveSpeaker(func(id string) {
		select {
		case got <- id:
		default:
		}
	})
	quiet := newTestPublisher(t, s, "talk", pubOpts{audio: true, id: "quiet"})
	loud := newTestPublisher(t, s, "talk", pubOpts{audio: true, id: "loud"})
	if loud.levelExt == 0 {
		t.Fatal("audio level extension not negotiated")
	}
	loud.level = 20
	quiet.level = 65
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go quiet.run(ctx, 30)
	go loud.run(ctx, 30)
	// The quiet publisher may be heard alone for a moment while the loud
	// one connects; the loud one must win soon after.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case id := <-got:
			if id == "loud" {
				return
			}
		case <-deadline:
			t.Fatal("loud publisher never became the active speaker")
		}
	}
}

// TestRenegotiatingParticipant drives a participant like the WebSocket
// layer does: the server offers when tracks appear or disappear, and a
// client offer that collides with a server offer wins (server rolls back).
func TestRenegotiatingParticipant(t *testing.T) {
	s := newTestSFU(t)
	ts := newSubscriberPC(t)
	part, err := s.Join(Streams, "reneg", ParticipantOptions{ID: "viewer", AutoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	ts.part = part
	var offers atomic.Int32
	errs := make(chan error, 8)
	part.OnLocalOffer(func(sdp string) {
		n := offers.Add(1)
		go func() {
			if n == 1 {
				// Glare: the client offers while the server's offer is in
				// flight; the server refuses, the client answers the
				// server's offer and offers again.
				// (The colliding offer comes from a scratch PeerConnection:
				// a pion client cannot roll back its own, unlike a browser.)
				scratch, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
				if err != nil {
					errs <- err
					return
				}
				defer scratch.Close()
				if _, err := scratch.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
					errs <- err
					return
				}
				offer, err := scratch.CreateOffer(nil)
				if err != nil {
					errs <- err
					return
				}
				if _, err := part.HandleOffer(context.Background(), offer.SDP); !errors.Is(err, ErrGlare) {
					errs <- fmt.Errorf("want ErrGlare, got %v", err)
					return
				}
				if err := answerServer(ts.pc, part, sdp); err != nil {
					errs <- err
					return
				}
				offer, err = ts.pc.CreateOffer(nil)
				if err == nil {
					err = ts.pc.SetLocalDescription(offer)
				}
				var answer string
				if err == nil {
					answer, err = part.HandleOffer(context.Background(), offer.SDP)
				}
				if err == nil {
					err = ts.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
				}
				if err != nil {
					errs <- err
				}
				return
			}
			if err := answerServer(ts.pc, part, sdp); err != nil {
				errs <- err
			}
		}()
	})
	pub := newTestPublisher(t, s, "reneg", pubOpts{audio: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.run(ctx, 30)

	ts.waitFor(8*time.Second, "media after renegotiation", func() bool {
		select {
		case err := <-errs:
			t.Fatalf("signaling: %v", err)
		default:
		}
		return len(ts.pkts["video"]) >= 30 && len(ts.pkts["audio"]) >= 5
	})
	checkInOrder(t, "viewer", ts.video())

	pub.part.Close()
	ts.waitFor(5*time.Second, "tracks end after unpublish", func() bool { return ts.ended["video"] && ts.ended["audio"] })
	select {
	case <-part.Done():
		t.Fatal("renegotiating participant should stay when a publisher leaves")
	default:
	}
}

func answerServer(pc *webrtc.PeerConnection, part *Participant, offer string) error {
	err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer})
	var answer webrtc.SessionDescription
	if err == nil {
		answer, err = pc.CreateAnswer(nil)
	}
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err == nil {
		err = part.HandleAnswer(answer.SDP)
	}
	return err
}
