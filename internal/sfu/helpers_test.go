package sfu

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SFU_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func newTestSFU(t testing.TB) *SFU {
	t.Helper()
	s, err := New(Config{UDP: ":0", TCP: "off", PublicIP: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// clientAPI builds a pion API for test clients on loopback. extra
// interceptors are added before the default ones (so they sit closest to
// the network).
func clientAPI(t testing.TB, extra ...interceptor.Factory) *webrtc.API {
	t.Helper()
	return clientAPIWith(t, (*webrtc.MediaEngine).RegisterDefaultCodecs, extra...)
}

// clientAPIWith is clientAPI with the codecs that codecs registers.
func clientAPIWith(t testing.TB, codecs func(*webrtc.MediaEngine) error, extra ...interceptor.Factory) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := codecs(me); err != nil {
		t.Fatal(err)
	}
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: audioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: absSendTimeURI}, k); err != nil {
			t.Fatal(err)
		}
	}
	ir := &interceptor.Registry{}
	for _, f := range extra {
		ir.Add(f)
	}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	// Test interceptors drop packets after SRTP; the retransmission has the
	// same sequence number, which replay protection would discard.
	se.DisableSRTPReplayProtection(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// testPublisher sends synthetic VP8 video (and optionally Opus audio).
// Each video payload carries a 4-byte counter after the VP8 descriptor.
type testPublisher struct {
	t     testing.TB
	pc    *webrtc.PeerConnection
	video []*webrtc.TrackLocalStaticRTP // one per simulcast layer
	audio *webrtc.TrackLocalStaticRTP
	part  *Participant

	midExt, ridExt, levelExt uint8

	mu      sync.Mutex
	keyNow  bool
	plis    int
	seq     []uint16
	counter uint32
	aseq    uint16
	level   uint8 // audio level to send (0 loud .. 127 silent)
	skip    int   // a simulcast layer (index+1) that sends nothing, as a browser pauses one; 0 = none
	payload int
	twcc    int      // TWCC feedback packets received
	rembs   int      // REMBs received
	remb    float32  // the last REMB's bitrate
	nacked  []uint16 // sequence numbers NACKed, in order
}

type pubOpts struct {
	rids    []string // simulcast RIDs; nil = single layer
	audio   bool
	id      string
	payload int // bytes of filler per video packet of the lowest layer; 0 means 200
}

func newTestPublisher(t testing.TB, s *SFU, room string, o pubOpts) *testPublisher {
	t.Helper()
	// Like a browser, the publisher numbers its packets transport-wide
	// (pion's defaults only send the feedback).
	tcc, err := twcc.NewHeaderExtensionInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	api := clientAPI(t, tcc)
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	tp := &testPublisher{t: t, pc: pc, level: 127, payload: o.payload}
	t.Cleanup(func() { _ = pc.Close() })
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	var sender *webrtc.RTPSender
	if len(o.rids) == 0 {
		tr, err := webrtc.NewTrackLocalStaticRTP(codec, "video", "pub")
		if err != nil {
			t.Fatal(err)
		}
		tp.video = append(tp.video, tr)
		if sender, err = pc.AddTrack(tr); err != nil {
			t.Fatal(err)
		}
	} else {
		for i, rid := range o.rids {
			tr, err := webrtc.NewTrackLocalStaticRTP(codec, "video", "pub", webrtc.WithRTPStreamID(rid))
			if err != nil {
				t.Fatal(err)
			}
			tp.video = append(tp.video, tr)
			if i == 0 {
				if sender, err = pc.AddTrack(tr); err != nil {
					t.Fatal(err)
				}
			} else if err := sender.AddEncoding(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	tp.seq = make([]uint16, len(tp.video))
	for i := range tp.seq {
		tp.seq[i] = uint16(1000 * (i + 1))
	}
	if len(o.rids) == 0 {
		go tp.readRTCP(func() ([]rtcp.Packet, error) { p, _, err := sender.ReadRTCP(); return p, err })
	} else {
		for _, rid := range o.rids {
			go tp.readRTCP(func() ([]rtcp.Packet, error) { p, _, err := sender.ReadSimulcastRTCP(rid); return p, err })
		}
	}
	if o.audio {
		at, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
		if err != nil {
			t.Fatal(err)
		}
		tp.audio = at
		as, err := pc.AddTrack(at)
		if err != nil {
			t.Fatal(err)
		}
		go tp.readRTCP(func() ([]rtcp.Packet, error) { p, _, err := as.ReadRTCP(); return p, err })
	}
	part, err := s.Join(Streams, room, ParticipantOptions{ID: o.id, OneShot: true})
	if err != nil {
		t.Fatal(err)
	}
	tp.part = part
	negotiate(t, pc, part, "publisher")
	if tp.audio != nil {
		for _, tr := range pc.GetTransceivers() {
			if tr.Sender() != nil && tr.Sender().Track() == tp.audio {
				for _, e := range tr.Sender().GetParameters().HeaderExtensions {
					if e.URI == audioLevelURI {
						tp.levelExt = uint8(e.ID)
					}
				}
			}
		}
	}
	for _, e := range sender.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			tp.midExt = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			tp.ridExt = uint8(e.ID)
		}
	}
	return tp
}

func (tp *testPublisher) readRTCP(read func() ([]rtcp.Packet, error)) {
	for {
		pkts, err := read()
		if err != nil {
			return
		}
		for _, p := range pkts {
			tp.mu.Lock()
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				tp.keyNow = true
				tp.plis++
			case *rtcp.TransportLayerCC:
				tp.twcc++
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				tp.rembs++
				tp.remb = p.Bitrate
			case *rtcp.TransportLayerNack:
				for _, pr := range p.Nacks {
					tp.nacked = append(tp.nacked, pr.PacketList()...)
				}
			}
			tp.mu.Unlock()
		}
	}
}

// sendFrame sends one video frame of n packets on every layer; the first
// packet of a keyframe has a VP8 keyframe header. It returns the counter of
// the first packet.
func (tp *testPublisher) sendFrame(n int, key bool) uint32 {
	tp.mu.Lock()
	if tp.keyNow {
		key = true
		tp.keyNow = false
	}
	first := tp.counter
	tp.mu.Unlock()
	for li, tr := range tp.video {
		tp.mu.Lock()
		c, skip := first, tp.skip == li+1
		tp.mu.Unlock()
		if skip {
			continue
		}
		for i := 0; i < n; i++ {
			filler := tp.payload
			if filler == 0 {
				filler = 200
			}
			payload := make([]byte, 1+1+4+filler*(li+1))
			if i == 0 {
				payload[0] = 0x10 // S=1, PID=0
				if key {
					payload[1] = 0x00 // P=0: keyframe
				} else {
					payload[1] = 0x01
				}
			}
			binary.BigEndian.PutUint32(payload[2:], c)
			payload[6] = byte(li)
			tp.mu.Lock()
			seq := tp.seq[li]
			tp.seq[li]++
			tp.mu.Unlock()
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: c * 3000, Marker: i == n-1}, Payload: payload}
			if len(tp.video) > 1 {
				_ = pkt.Header.SetExtension(tp.midExt, []byte("0"))
				_ = pkt.Header.SetExtension(tp.ridExt, []byte(tr.RID()))
			}
			_ = tr.WriteRTP(pkt) // errors only once the connection is gone
			c++
		}
	}
	tp.mu.Lock()
	tp.counter = first + uint32(n)
	tp.mu.Unlock()
	return first
}

func (tp *testPublisher) sendAudio() {
	if tp.audio == nil {
		return
	}
	tp.mu.Lock()
	seq := tp.aseq
	tp.aseq++
	lv := tp.level
	tp.mu.Unlock()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0xf8, 0xff, 0xfe}}
	if tp.levelExt != 0 {
		_ = pkt.Header.SetExtension(tp.levelExt, []byte{lv})
	}
	_ = tp.audio.WriteRTP(pkt)
}

// run sends ~30 fps video (3 packets per frame, keyframe every keyEvery
// frames) until ctx ends.
func (tp *testPublisher) run(ctx context.Context, keyEvery int) { tp.runFrames(ctx, keyEvery, 3) }

// runFrames is run with n packets per frame.
func (tp *testPublisher) runFrames(ctx context.Context, keyEvery, n int) {
	tk := time.NewTicker(33 * time.Millisecond)
	defer tk.Stop()
	for i := 0; ; i++ {
		tp.sendFrame(n, keyEvery > 0 && i%keyEvery == 0)
		tp.sendAudio()
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// testSubscriber is a pion client receiving through one PeerConnection.
type testSubscriber struct {
	t    testing.TB
	pc   *webrtc.PeerConnection
	part *Participant

	mu      sync.Mutex
	pkts    map[string][]*rtp.Packet // by track kind
	rtx     map[string]int           // packets that came on the RTX stream, by kind
	ended   map[string]bool
	tracks  chan *webrtc.TrackRemote
	changed chan struct{}
}

func newSubscriberPC(t testing.TB, extra ...interceptor.Factory) *testSubscriber {
	t.Helper()
	return newSubscriberPCWith(t, clientAPI(t, extra...))
}

// newSubscriberPCWith is newSubscriberPC on api.
func newSubscriberPCWith(t testing.TB, api *webrtc.API) *testSubscriber {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	ts := &testSubscriber{t: t, pc: pc, pkts: map[string][]*rtp.Packet{}, rtx: map[string]int{}, ended: map[string]bool{}, tracks: make(chan *webrtc.TrackRemote, 8), changed: make(chan struct{}, 1)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		ts.tracks <- tr
		kind := tr.Kind().String()
		go func() {
			for {
				p, attr, err := tr.ReadRTP()
				if err != nil {
					ts.mu.Lock()
					ts.ended[kind] = true
					ts.mu.Unlock()
					ts.poke()
					return
				}
				ts.mu.Lock()
				ts.pkts[kind] = append(ts.pkts[kind], p)
				if attr != nil && attr.Get(webrtc.AttributeRtxSsrc) != nil {
					ts.rtx[kind]++
				}
				ts.mu.Unlock()
				ts.poke()
			}
		}()
	})
	return ts
}

func (ts *testSubscriber) poke() {
	select {
	case ts.changed <- struct{}{}:
	default:
	}
}

// joinWHEP subscribes like a WHEP viewer: recvonly offer, one answer.
func joinWHEP(t testing.TB, s *SFU, room string, q Quality, extra ...interceptor.Factory) *testSubscriber {
	t.Helper()
	return joinWHEPWith(t, s, room, ParticipantOptions{MaxQuality: q}, extra...)
}

// joinWHEPWith is joinWHEP with more participant options.
func joinWHEPWith(t testing.TB, s *SFU, room string, opts ParticipantOptions, extra ...interceptor.Factory) *testSubscriber {
	t.Helper()
	return joinWHEPOn(t, s, room, opts, newSubscriberPC(t, extra...))
}

// joinWHEPOn is joinWHEPWith on a given client connection.
func joinWHEPOn(t testing.TB, s *SFU, room string, opts ParticipantOptions, ts *testSubscriber) *testSubscriber {
	t.Helper()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := ts.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	opts.AutoSubscribe, opts.OneShot, opts.ReceiveOnly = true, true, true
	part, err := s.Join(Streams, room, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.part = part
	negotiate(t, ts.pc, part, "subscriber")
	return ts
}

// negotiate makes pc's offer, has part answer it, and applies the answer,
// which it returns; who names pc in errors.
func negotiate(t testing.TB, pc *webrtc.PeerConnection, part *Participant, who string) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	answer, err := part.HandleOffer(ctx, offer.SDP)
	if err != nil {
		t.Fatalf("%s HandleOffer: %v", who, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return answer
}

// waitFor polls cond until it holds or the deadline passes.
func (ts *testSubscriber) waitFor(d time.Duration, what string, cond func() bool) {
	ts.t.Helper()
	deadline := time.After(d)
	for {
		ts.mu.Lock()
		ok := cond()
		ts.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ts.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			if ts.part != nil {
				ts.t.Logf("participant stats %+v", ts.part.Stats())
				for _, tr := range ts.pc.GetTransceivers() {
					ts.t.Logf("client transceiver mid=%q kind=%s dir=%s tracks=%d", tr.Mid(), tr.Kind(), tr.Direction(), len(tr.Receiver().Tracks()))
				}
				ts.t.Logf("client local:\n%s\nremote:\n%s", ts.pc.LocalDescription().SDP, ts.pc.RemoteDescription().SDP)
			}
			ts.t.Fatalf("timeout waiting for %s", what)
		}
	}
}

func (ts *testSubscriber) video() []*rtp.Packet {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*rtp.Packet(nil), ts.pkts["video"]...)
}

func counterOf(p *rtp.Packet) uint32 { return binary.BigEndian.Uint32(p.Payload[2:6]) }
