package sfu

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
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

// sendPadding sends n padding-only packets on the first video layer, as a
// browser probing its bandwidth does, taking sequence numbers like media.
func (tp *testPublisher) sendPadding(n int) {
	for range n {
		tp.mu.Lock()
		seq := tp.seq[0]
		tp.seq[0]++
		ts := (tp.counter - 1) * 3000
		tp.mu.Unlock()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Padding: true, PaddingSize: 200}}
		_ = tp.video[0].WriteRTP(pkt)
	}
}

// extIDs returns the header-extension IDs a client negotiated for
// receiving kind.
func extIDs(t *testing.T, pc *webrtc.PeerConnection, kind webrtc.RTPCodecType) map[string]uint8 {
	t.Helper()
	ids := map[string]uint8{}
	for _, tr := range pc.GetTransceivers() {
		if tr.Kind() != kind || tr.Receiver() == nil {
			continue
		}
		for _, e := range tr.Receiver().GetParameters().HeaderExtensions {
			ids[e.URI] = uint8(e.ID)
		}
	}
	return ids
}

// TestPaddingAndHeaderExtensions checks what a subscriber receives: no
// padding-only video packets and no gap where they were; the publisher's
// audio level, a send time and the subscriber transport's own
// transport-wide sequence numbers, under the subscriber's extension IDs;
// none of the publisher's other extensions.
func TestPaddingAndHeaderExtensions(t *testing.T) {
	s := newTestSFU(t)
	pub := newTestPublisher(t, s, "ext", pubOpts{audio: true})
	pub.level = 30
	room, _ := s.LookupRoom(Streams, "ext")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			pub.sendFrame(3, i%30 == 0)
			pub.sendAudio()
			if i%3 == 1 {
				pub.sendPadding(1 + i%4) // runs of padding between frames
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	defer func() { close(stop); <-done }()
	room.WaitTracks(ctx, 2)

	sub := joinWHEP(t, s, "ext", QualityHigh)
	sub.waitFor(10*time.Second, "200 video and 30 audio packets", func() bool {
		return len(sub.pkts["video"]) >= 200 && len(sub.pkts["audio"]) >= 30
	})
	video, audio := extIDs(t, sub.pc, webrtc.RTPCodecTypeVideo), extIDs(t, sub.pc, webrtc.RTPCodecTypeAudio)
	for _, want := range []struct {
		ids map[string]uint8
		uri string
	}{{video, absSendTimeURI}, {video, sdp.TransportCCURI}, {audio, audioLevelURI}} {
		if want.ids[want.uri] == 0 {
			t.Fatalf("subscriber did not negotiate %s: %v", want.uri, want.ids)
		}
	}

	sub.mu.Lock()
	vp, ap := append([]*rtp.Packet(nil), sub.pkts["video"]...), append([]*rtp.Packet(nil), sub.pkts["audio"]...)
	sub.mu.Unlock()
	transportSeqs := map[uint16]bool{}
	checkExts := func(kind string, p *rtp.Packet, allowed map[string]uint8) {
		t.Helper()
		known := map[uint8]bool{}
		for _, id := range allowed {
			known[id] = true
		}
		for _, id := range p.GetExtensionIDs() {
			if !known[id] || id == allowed[sdp.SDESMidURI] {
				t.Fatalf("%s packet %d carries extension %d, not one the SFU writes (%v)", kind, p.SequenceNumber, id, allowed)
			}
		}
		if kind == "audio" {
			return // transport-cc numbers video only (see downTrack.Bind)
		}
		tcc := p.GetExtension(allowed[sdp.TransportCCURI])
		if len(tcc) != 2 {
			t.Fatalf("%s packet %d without transport-cc", kind, p.SequenceNumber)
		}
		q := uint16(tcc[0])<<8 | uint16(tcc[1])
		if transportSeqs[q] {
			t.Fatalf("transport-wide sequence number %d used twice", q)
		}
		transportSeqs[q] = true
	}
	if s.Stats().PaddingDropped == 0 {
		t.Fatal("no padding-only packet dropped: the publisher sent none?")
	}
	for i, p := range vp {
		if len(p.Payload) == 0 {
			t.Fatalf("padding-only packet %d forwarded", p.SequenceNumber)
		}
		if i > 0 && p.SequenceNumber != vp[i-1].SequenceNumber+1 {
			t.Fatalf("video sequence jumps from %d to %d: the subscriber sees loss", vp[i-1].SequenceNumber, p.SequenceNumber)
		}
		if len(p.GetExtension(video[absSendTimeURI])) != 3 {
			t.Fatalf("video packet %d without abs-send-time", p.SequenceNumber)
		}
		checkExts("video", p, map[string]uint8{absSendTimeURI: video[absSendTimeURI], sdp.TransportCCURI: video[sdp.TransportCCURI]})
	}
	for _, p := range ap {
		lv := p.GetExtension(audio[audioLevelURI])
		if len(lv) != 1 || lv[0]&0x7f != 30 {
			t.Fatalf("audio packet %d: level extension %v, want 30", p.SequenceNumber, lv)
		}
		checkExts("audio", p, map[string]uint8{audioLevelURI: audio[audioLevelURI], absSendTimeURI: audio[absSendTimeURI], sdp.TransportCCURI: audio[sdp.TransportCCURI]})
	}
	// One transport, one counter: the numbers form a dense range (the
	// publisher's own numbers would not).
	lo, hi := uint16(0), uint16(0)
	first := true
	for q := range transportSeqs {
		if first || int16(q-lo) < 0 {
			lo = q
		}
		if first || int16(q-hi) > 0 {
			hi = q
		}
		first = false
	}
	if span := int(hi-lo) + 1; span > len(transportSeqs)+len(transportSeqs)/10 {
		t.Fatalf("transport-wide sequence numbers span %d for %d packets: not one counter per subscriber transport", span, len(transportSeqs))
	}
}

// opusFmtp returns the fmtp parameters of the Opus payload type in sdpText.
func opusFmtp(t *testing.T, sdpText string) map[string]string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(sdpText)); err != nil {
		t.Fatal(err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "audio" {
			continue
		}
		for _, f := range md.MediaName.Formats {
			var pt uint8
			if _, err := fmt.Sscan(f, &pt); err != nil {
				continue
			}
			c, err := sd.GetCodecForPayloadType(pt)
			if err == nil && strings.EqualFold(c.Name, "opus") {
				return fmtpMap(c.Fmtp)
			}
		}
	}
	t.Fatalf("no Opus in:\n%s", sdpText)
	return nil
}

// TestOpusFECAndDTXNegotiated: the SFU asks publishers for Opus in-band FEC
// (a lost packet is rebuilt from the next one) and allows DTX, in its
// answers to publishers and towards subscribers.
func TestOpusFECAndDTXNegotiated(t *testing.T) {
	s := newTestSFU(t)
	pub := runPublisher(t, s, "opus", pubOpts{audio: true}, 2)
	sub := joinWHEP(t, s, "opus", QualityHigh)
	for who, desc := range map[string]*webrtc.SessionDescription{
		"answer to the publisher":  pub.pc.RemoteDescription(),
		"answer to the subscriber": sub.pc.RemoteDescription(),
	} {
		f := opusFmtp(t, desc.SDP)
		if f["useinbandfec"] != "1" || f["usedtx"] != "1" {
			t.Errorf("%s: Opus fmtp %v, want useinbandfec=1 and usedtx=1", who, f)
		}
	}
}

func TestWithOpusFECAndDTX(t *testing.T) {
	in := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;usedtx=0\r\na=rtpmap:0 PCMU/8000\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=rtpmap:109 OPUS/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fmtp:96 x=1\r\n"
	want := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;usedtx=1;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=rtpmap:109 OPUS/48000/2\r\na=fmtp:109 useinbandfec=1;usedtx=1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fmtp:96 x=1\r\n"
	if got := withOpusFECAndDTX(in); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

// runPublisher starts a test publisher sending ~30 fps (a keyframe a
// second) until the test ends, and waits for its tracks in the room.
func runPublisher(t *testing.T, s *SFU, room string, o pubOpts, tracks int) *testPublisher {
	t.Helper()
	pub, r := startPublisher(t, s, room, o)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.WaitTracks(ctx, tracks)
	return pub
}

// runSimulcastPublisher is runPublisher for one video track in layers
// q, h and f, and waits until the three are measured.
func runSimulcastPublisher(t *testing.T, s *SFU, room string, payload int) *testPublisher {
	t.Helper()
	pub, r := startPublisher(t, s, room, pubOpts{rids: []string{"q", "h", "f"}, payload: payload})
	waitCond(t, 5*time.Second, "three layers, measured", func() bool {
		ts := r.Tracks()
		return len(ts) == 1 && len(ts[0].Layers) == 3 && ts[0].Bitrate > 0
	})
	return pub
}

func startPublisher(t *testing.T, s *SFU, room string, o pubOpts) (*testPublisher, *Room) {
	t.Helper()
	pub := newTestPublisher(t, s, room, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pub.run(ctx, 30) }()
	t.Cleanup(func() { cancel(); <-done })
	r, _ := s.LookupRoom(Streams, room)
	return pub, r
}

// TestPublisherFeedback: a publisher gets TWCC feedback for its own
// estimate, and REMBs: the ceiling while anyone may take all, what its
// best subscriber can take when all are constrained.
func TestPublisherFeedback(t *testing.T) {
	s, err := New(Config{UDP: ":0", TCP: "off", PublicIP: "127.0.0.1", Logger: testLogger(), MaxPublishBitrate: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	pub := runPublisher(t, s, "fb", pubOpts{audio: true}, 2)
	remb := func(want float32) func() bool {
		return func() bool {
			pub.mu.Lock()
			defer pub.mu.Unlock()
			return pub.twcc > 0 && pub.rembs > 0 && pub.remb == want
		}
	}
	waitCond(t, 10*time.Second, "TWCC feedback and a REMB at the ceiling", remb(1_000_000))

	sub := joinWHEP(t, s, "fb", QualityHigh)
	sub.part.SetMaxBitrate(300_000)
	waitCond(t, 10*time.Second, "a REMB of what the only subscriber can take", remb(300_000))
	sub.part.SetMaxBitrate(0)
	waitCond(t, 10*time.Second, "the ceiling again", remb(1_000_000))
	if st := pub.part.Stats(); st.REMB != 1_000_000 {
		t.Fatalf("publisher stats REMB %d", st.REMB)
	}
}

func TestBWELossLowersCleanRaisesThroughProbes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// Ten minutes of 5 % random loss, in windows of 50 packets: repaired
	// by NACKs, never congestion.
	var random bwe
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range 2400 {
		lost := 0
		for range bweMinPackets {
			if rnd.IntN(100) < 5 {
				lost++
			}
		}
		random.update(t0.Add(time.Duration(i)*bweWindow), float64(lost)/bweMinPackets, 2_000_000, false, 5_000_000)
		if random.est != 0 {
			t.Fatalf("5 %% random loss constrained the estimate after %v", time.Duration(i)*bweWindow)
		}
	}

	var b bwe
	b.update(t0.Add(250*time.Millisecond), 0.2, 800_000, false, 5_000_000)
	if b.est != 720_000 {
		t.Fatalf("after 20 %% loss at 800 kbit/s the estimate is %d, want 90 %% of it", b.est)
	}
	b.update(t0.Add(400*time.Millisecond), 0.3, 800_000, false, 5_000_000)
	if b.est != 720_000 {
		t.Fatalf("lowered again within %v: %d", congestionHold, b.est)
	}
	// A growing queue holds the estimate (the smoothed loss decays
	// meanwhile); then more loss lowers it again.
	for i := range 8 {
		b.update(t0.Add(time.Duration(500+50*i)*time.Millisecond), 0, 800_000, true, 5_000_000)
	}
	if b.est != 720_000 {
		t.Fatalf("queueing moved the estimate to %d", b.est)
	}
	b.update(t0.Add(900*time.Millisecond), 0.4, 700_000, false, 5_000_000)
	if b.est < 620_000 || b.est >= 700_000 {
		t.Fatalf("loss again: estimate %d, want 700k less half the smoothed loss", b.est)
	}
	// Clean, but only the current layer's 400 kbit/s delivered: the
	// estimate creeps up to 1.5 times that and no further.
	now := t0.Add(900 * time.Millisecond)
	for range 40 {
		now = now.Add(250 * time.Millisecond)
		b.update(now, 0, 400_000, false, 5_000_000)
		if b.probeRate(now) > 0 {
			break
		}
	}
	if b.est > 700_000 {
		t.Fatalf("without a probe the estimate went to %d", b.est)
	}
	if b.probeRate(now) != b.est || now.Sub(t0) < probeQuiet {
		t.Fatalf("no probe %v after the loss (rate %d)", now.Sub(t0), b.probeRate(now))
	}
	// The probe's padding arrives cleanly: 400k of media + the probe.
	now = now.Add(250 * time.Millisecond)
	before := b.est
	b.update(now, 0, 400_000+before, false, 5_000_000)
	if want := (400_000 + before) * 9 / 10; b.est != want {
		t.Fatalf("after a clean probe the estimate is %d, want %d", b.est, want)
	}
	// Climbing past what every layer needs lifts the constraint.
	for i := 0; b.est != 0 && i < 100; i++ {
		now = now.Add(250 * time.Millisecond)
		b.update(now, 0, b.est+b.probeRate(now), false, 1_500_000)
	}
	if b.est != 0 {
		t.Fatalf("estimate stuck at %d under a 1.5 Mbit/s ceiling", b.est)
	}
	if b.probeRate(now) != 0 {
		t.Fatal("probing while unconstrained")
	}
}

// TestBWEReadsTWCCFeedback feeds a real TWCC feedback packet (pion's
// recorder, as a subscriber builds it): a quarter of 100 packets lost.
func TestBWEReadsTWCCFeedback(t *testing.T) {
	sent := &sentLog{epoch: time.Unix(1000, 0)}
	for i := range 100 {
		sent.record(uint16(60000+i), 1000, sent.epoch.Add(time.Duration(i)*5*time.Millisecond)) // wraps past 65535
	}
	rec := quarterLost(t, sent)
	var b bwe
	var est uint64
	var changed bool
	for _, p := range rec.BuildFeedbackPacket() {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			est, _, changed = b.onFeedback(fb, sent, time.Unix(1001, 0), 0, true)
		}
	}
	// 75 of 1000 bytes over 490 ms: 1.22 Mbit/s delivered, 25 % lost.
	if !changed || est < 1_000_000 || est > 1_150_000 {
		t.Fatalf("estimate %d (changed %v), want 87.5 %% of ~1.22 Mbit/s", est, changed)
	}

	// The same feedback while the subscriber's receiver reports show no
	// loss: not congestion, the estimate stays unconstrained.
	var clean bwe
	for _, p := range quarterLost(t, sent).BuildFeedbackPacket() {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			est, _, _ = clean.onFeedback(fb, sent, time.Unix(1001, 0), 0, false)
		}
	}
	if est != 0 {
		t.Fatalf("estimate %d from loss the receiver reports do not confirm, want unconstrained (0)", est)
	}
}

// quarterLost is a subscriber's TWCC recorder that got three of every
// four of the 100 packets sent (20 ms after they were sent).
func quarterLost(t *testing.T, sent *sentLog) *twcc.Recorder {
	t.Helper()
	rec := twcc.NewRecorder(1)
	for i := range 100 {
		at := sent.epoch.Add(time.Duration(i) * 5 * time.Millisecond)
		if i%4 != 3 {
			rec.Record(2, uint16(60000+i), at.Sub(sent.epoch).Microseconds()+20_000)
		}
	}
	return rec
}

// policer is a link with a rate cap: a token bucket (no queue: what
// exceeds the rate is lost). A rate of 0 is no cap.
type policer struct {
	mu     sync.Mutex
	rate   int // bytes per second
	tokens float64
	last   time.Time
	drops  int
}

func (p *policer) setRate(bps int) {
	p.mu.Lock()
	p.rate, p.tokens, p.last = bps/8, 0, time.Now()
	p.mu.Unlock()
}

func (p *policer) dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drops
}

func (p *policer) pass(n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate == 0 {
		return true
	}
	now := time.Now()
	p.tokens = min(p.tokens+now.Sub(p.last).Seconds()*float64(p.rate), float64(p.rate)/10) // 100 ms of burst
	p.last = now
	if p.tokens < float64(n) {
		p.drops++
		return false
	}
	p.tokens -= float64(n)
	return true
}

// linkFilter is a subscriber's link in front of its pion stack: pass
// decides for each packet (of any stream, RTX included) whether it
// arrives.
type linkFilter struct {
	interceptor.NoOp
	pass func(size int) bool
}

func (f *linkFilter) NewInterceptor(string) (interceptor.Interceptor, error) { return f, nil }

func (f *linkFilter) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := r.Read(b, a)
			if err != nil || f.pass(n) {
				return n, attr, err
			}
		}
	})
}

// TestTWCCEstimateMovesSimulcastLayer: a subscriber whose link is capped
// below the top simulcast layer loses packets; its TWCC feedback brings
// its estimate and layer down. When the cap goes, probes find the room and
// it climbs back to the top layer.
func TestTWCCEstimateMovesSimulcastLayer(t *testing.T) {
	s := newTestSFU(t)
	runSimulcastPublisher(t, s, "bwe", 300)

	link := &policer{}
	sub := joinWHEP(t, s, "bwe", QualityHigh, &linkFilter{pass: link.pass})
	// layer is the layer the SFU forwards to the subscriber now (what it
	// receives lags, and retransmissions of the old layer mix in).
	layer := func() int {
		for _, d := range sub.part.downTracks() {
			if l := d.cur.Load(); l != nil && d.kind == webrtc.RTPCodecTypeVideo {
				return l.rank
			}
		}
		return -1
	}
	sub.waitFor(10*time.Second, "the top layer", func() bool { return layer() == 2 })

	link.setRate(550_000) // the top layer needs ~680 kbit/s, the middle ~470
	sub.waitFor(15*time.Second, "a lower layer on the capped link", func() bool { return layer() < 2 })
	st := sub.part.Stats()
	if st.Estimate == 0 {
		t.Fatalf("down a layer without an estimate: %+v", st)
	}
	t.Logf("capped: estimate %d bit/s, layer %d, %d packets policed", st.Estimate, layer(), link.dropped())

	link.setRate(0)
	sub.waitFor(20*time.Second, "the top layer again once the cap is gone", func() bool { return layer() == 2 })
	t.Logf("uncapped: estimate %d bit/s, %d probe packets sent", sub.part.Stats().Estimate, s.Stats().Probes)
}

// randomLoss loses percent of the packets, at random (seeded), like a
// lossy radio link.
func randomLoss(percent int) *linkFilter {
	var mu sync.Mutex
	rnd := rand.New(rand.NewPCG(1, 2))
	return &linkFilter{pass: func(int) bool {
		mu.Lock()
		defer mu.Unlock()
		return rnd.IntN(100) >= percent
	}}
}

// TestRandomLossKeepsTopLayer: 5 % random loss is repaired (NACK, RTX),
// not taken for congestion: the subscriber keeps the top simulcast layer
// and its estimate stays unconstrained.
func TestRandomLossKeepsTopLayer(t *testing.T) {
	s := newTestSFU(t)
	runSimulcastPublisher(t, s, "loss", 0)
	sub := joinWHEP(t, s, "loss", QualityHigh, randomLoss(5))
	// ~5 s of the top layer (90 packets a second).
	sub.waitFor(20*time.Second, "450 top-layer packets", func() bool {
		n := 0
		for _, p := range sub.pkts["video"] {
			if p.Payload[6] == 2 {
				n++
			}
		}
		return n >= 450
	})
	v := sub.video()
	first, end := v[0].SequenceNumber, v[len(v)-1].SequenceNumber
	// Woken by every packet that arrives, retransmissions included.
	sub.waitFor(10*time.Second, "every lost packet repaired", func() bool {
		got := map[uint16]bool{}
		for _, p := range sub.pkts["video"] {
			got[p.SequenceNumber] = true
		}
		for q := first; q != end; q++ {
			if !got[q] {
				return false
			}
		}
		return true
	})
	if v[len(v)-1].Payload[6] != 2 {
		t.Errorf("moved off the top layer to %d", v[len(v)-1].Payload[6])
	}
	if st := sub.part.Stats(); st.Estimate != 0 {
		t.Errorf("random loss constrained the estimate to %d bit/s", st.Estimate)
	}
}

// TestBWENoProbeOnALossyLink: a constrained estimate on a link that keeps
// losing 5 % (repaired by NACKs, below the congestion threshold) is not
// probed — padding would only add to what the link loses — and probing
// starts once the link has been clean for probeQuiet.
func TestBWENoProbeOnALossyLink(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var b bwe
	b.update(t0, 0.2, 800_000, false, 5_000_000) // congestion: constrained
	if b.est == 0 {
		t.Fatal("not constrained after 20 % loss")
	}
	at := t0
	for i := range 40 { // 10 s of 5 % loss
		at = t0.Add(time.Duration(i+1) * bweWindow)
		b.update(at, 0.05, 700_000, false, 5_000_000)
		if r := b.probeRate(at); r != 0 {
			t.Fatalf("probing at %d bit/s %v into a 5 %%-lossy link", r, at.Sub(t0))
		}
	}
	probed := false
	for range 40 { // then 10 s clean
		at = at.Add(bweWindow)
		b.update(at, 0, 700_000, false, 5_000_000)
		if b.probeRate(at) != 0 {
			probed = true
			break
		}
	}
	if !probed {
		t.Fatal("no probe after 10 s of a clean link")
	}
}
