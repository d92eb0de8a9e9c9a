package sfu

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func TestKeyframeDetection(t *testing.T) {
	tests := []struct {
		name string
		k    codecKind
		p    []byte
		want bool
	}{
		{"vp8 key", codecVP8, []byte{0x10, 0x00, 0x9d}, true},
		{"vp8 inter", codecVP8, []byte{0x10, 0x01}, false},
		{"vp8 continuation", codecVP8, []byte{0x00, 0x00}, false},
		{"vp8 partition 1", codecVP8, []byte{0x11, 0x00}, false},
		{"vp8 ext 15-bit picture id key", codecVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"vp8 ext 7-bit picture id tl0 tid inter", codecVP8, []byte{0x90, 0xe0, 0x12, 0x05, 0x40, 0x01}, false},
		{"vp8 ext all key", codecVP8, []byte{0x90, 0xe0, 0x12, 0x05, 0x40, 0x00}, true},
		{"vp8 truncated", codecVP8, []byte{0x90}, false},
		{"vp8 empty", codecVP8, nil, false},
		{"h264 idr", codecH264, []byte{0x65, 0x88}, true},
		{"h264 sps", codecH264, []byte{0x67, 0x42}, true},
		{"h264 non-idr", codecH264, []byte{0x41, 0x9a}, false},
		{"h264 stap-a sps", codecH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 stap-a non-idr", codecH264, []byte{0x78, 0x00, 0x02, 0x41, 0x42}, false},
		{"h264 stap-a truncated", codecH264, []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"h264 fu-a idr start", codecH264, []byte{0x7c, 0x85, 0x00}, true},
		{"h264 fu-a idr middle", codecH264, []byte{0x7c, 0x05, 0x00}, false},
		{"h264 fu-a non-idr start", codecH264, []byte{0x7c, 0x81}, false},
		{"vp9 key", codecVP9, []byte{0x88, 0x01}, true},
		{"vp9 key with picture id", codecVP9, []byte{0x88 | 0x80, 0x81, 0x02}, true},
		{"vp9 inter", codecVP9, []byte{0xc8}, false},
		{"vp9 not begin", codecVP9, []byte{0x80, 0x01}, false},
		{"vp9 spatial layer 1", codecVP9, []byte{0x28, 0x02, 0x00}, false},
		{"vp9 spatial layer 0", codecVP9, []byte{0x28, 0x00, 0x00}, true},
		{"av1 new sequence", codecAV1, []byte{0x18}, true},
		{"av1 continuation", codecAV1, []byte{0x88}, false},
		{"av1 plain", codecAV1, []byte{0x10}, false},
		{"h265 idr", codecH265, []byte{19 << 1, 0x01, 0xaf}, true},
		{"h265 cra", codecH265, []byte{21 << 1, 0x01, 0xaf}, true},
		{"h265 vps", codecH265, []byte{32 << 1, 0x01, 0x0c}, true},
		{"h265 trail", codecH265, []byte{1 << 1, 0x01, 0xaf}, false},
		{"h265 ap vps", codecH265, []byte{48 << 1, 0x01, 0x00, 0x02, 32 << 1, 0x01, 0x00, 0x02, 33 << 1, 0x01}, true},
		{"h265 ap trail", codecH265, []byte{48 << 1, 0x01, 0x00, 0x02, 1 << 1, 0x01}, false},
		{"h265 ap truncated", codecH265, []byte{48 << 1, 0x01, 0x00, 0x09, 32 << 1}, false},
		{"h265 fu idr start", codecH265, []byte{49 << 1, 0x01, 0x80 | 19}, true},
		{"h265 fu idr middle", codecH265, []byte{49 << 1, 0x01, 19}, false},
		{"h265 fu trail start", codecH265, []byte{49 << 1, 0x01, 0x80 | 1}, false},
		{"h265 short", codecH265, []byte{19 << 1}, false},
		{"opus", codecOther, []byte{0xff}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isKeyframeStart(tc.k, tc.p); got != tc.want {
				t.Fatalf("isKeyframeStart(%x) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestLayerRank(t *testing.T) {
	for rid, want := range map[string]int{"q": 0, "h": 1, "f": 2, "0": 0, "1": 1, "2": 2, "": 0, "LOW": 0, "hi": 2} {
		if got := layerRank(rid); got != want {
			t.Errorf("layerRank(%q) = %d, want %d", rid, got, want)
		}
	}
}

func TestAudioLevel(t *testing.T) {
	if lv, voice, ok := audioLevel([]byte{0x80 | 30}); !ok || !voice || lv != 30 {
		t.Fatalf("got %d %v %v", lv, voice, ok)
	}
	if _, _, ok := audioLevel(nil); ok {
		t.Fatal("empty extension accepted")
	}
}

func fillSlot(s *slot, seq uint16, payload []byte) {
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 10, SSRC: 42}
	n, err := h.MarshalTo(s.buf[:])
	if err != nil {
		panic(err)
	}
	s.n = n + copy(s.buf[n:], payload)
	if err := s.parse(); err != nil {
		panic(err)
	}
}

func TestPacketCache(t *testing.T) {
	c := newPacketCache(8)
	for seq := uint16(65530); seq != 10; seq++ {
		s := c.reserve()
		fillSlot(s, seq, []byte{byte(seq)})
		c.commit(s)
	}
	// The last 8 (2..9) are cached, older ones evicted.
	var p pktCopy
	for seq := uint16(2); seq < 10; seq++ {
		if !c.copyOut(seq, &p) {
			t.Errorf("seq %d missing", seq)
		} else if p.payload()[0] != byte(seq) || p.seq != seq {
			t.Errorf("seq %d: payload %d", seq, p.payload()[0])
		}
	}
	for _, seq := range []uint16{65530, 0, 1} {
		if c.copyOut(seq, &p) {
			t.Errorf("seq %d should be evicted", seq)
		}
	}
	// A queued reference to a slot that was reused no longer copies.
	s := &c.slots[c.next]
	gen := s.gen.Load()
	if !p.copyFrom(s, gen) {
		t.Fatal("copyFrom of an unchanged slot failed")
	}
	c.reserve()
	if p.copyFrom(s, gen) {
		t.Fatal("copyFrom of a reused slot succeeded")
	}
	// A copy without the lock that meets a slot half rewritten (a new
	// header length with the old packet's length) fails instead of
	// slicing out of range.
	s = &c.slots[c.next]
	gen = s.gen.Load()
	s.hdrLen, s.n, s.padLen = 40, 20, 0
	if p.copyFrom(s, gen) {
		t.Fatal("copyFrom of a torn slot succeeded")
	}
	s.hdrLen, s.n, s.padLen = 12, 20, 9
	if p.copyFrom(s, gen) {
		t.Fatal("copyFrom of a torn slot (padding longer than the payload) succeeded")
	}
}

func TestSlotPadding(t *testing.T) {
	var s slot
	h := rtp.Header{Version: 2, Padding: true, SequenceNumber: 1}
	n, _ := h.MarshalTo(s.buf[:])
	copy(s.buf[n:], []byte{1, 2, 3, 0, 0, 3})
	s.n = n + 6
	if err := s.parse(); err != nil {
		t.Fatal(err)
	}
	if got := s.payload(); len(got) != 3 || s.padLen != 3 {
		t.Fatalf("payload %v pad %d", got, s.padLen)
	}
	s.buf[s.n-1] = 200
	if err := s.parse(); err == nil {
		t.Fatal("bad padding accepted")
	}
}

func TestValidateOffer(t *testing.T) {
	if _, err := ValidateOffer("not sdp"); err == nil {
		t.Fatal("garbage accepted")
	}
	mpeg4 := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 49\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:49 MP4V-ES/90000\r\na=sendonly\r\n"
	_, err := ValidateOffer(mpeg4)
	ce, ok := err.(*CodecError)
	if !ok || ce.Kind != "video" || ce.Offered[0] != "video/MP4V-ES" {
		t.Fatalf("want CodecError, got %v", err)
	}
	pcmu := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\n"
	info, err := ValidateOffer(pcmu)
	if err != nil || info.Sending != 1 || len(info.Audio) != 1 {
		t.Fatalf("pcmu: %v %+v", err, info)
	}
}

// fakeWriter stands in for pion's SRTP write stream.
type fakeWriter struct{ n atomic.Int64 }

func (w *fakeWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.n.Add(1)
	return 12 + len(payload), nil
}

type nopSource struct{}

func (nopSource) SourceID() string       { return "pub" }
func (nopSource) RequestKeyframe(uint32) {}

// fanOutFixture builds a video layer with n subscribers whose writers are
// parked (no wake-ups), so that only the reader's side of the hand-off is
// measured, without any network.
func fanOutFixture(tb testing.TB, n int) (*layer, *slot, []*downTrack) {
	s := &SFU{rooms: map[roomKey]*Room{}}
	r := newRoom(s, Streams, "bench")
	up := newUpTrack(r, nopSource{}, "v", "s", webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96})
	l := up.addLayer("", 1, 0, nil)
	var ds []*downTrack
	idle := &writer{wake: make(chan struct{}, 1)} // never runs: the queues alone are measured
	for i := 0; i < n; i++ {
		pr := &prefs{}
		pr.maxLayer.Store(2)
		d := newDownTrack(r, up, pr, testLogger(), idle)
		d.target.Store(l)
		d.cur.Store(l)
		up.subs.add(d)
		ds = append(ds, d)
	}
	sl := l.cache.reserve()
	fillSlot(sl, 1, make([]byte, 1100))
	l.cache.commit(sl)
	return l, sl, ds
}

func TestFanOutDoesNotAllocate(t *testing.T) {
	l, s, ds := fanOutFixture(t, 50)
	allocs := testing.AllocsPerRun(200, func() {
		s.hdr.SequenceNumber++
		l.fanOut(s, 1)
	})
	if allocs != 0 {
		t.Fatalf("fanOut allocates %.1f times per packet", allocs)
	}
	if n := ds[7].q.n; n == 0 {
		t.Fatal("subscriber's queue is empty")
	}
}

// BenchmarkFanOut measures the publisher's side: handing one packet to n
// subscribers' queues (their writers' work is in BenchmarkForward).
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 10, 100, 300} {
		b.Run(itoa(n), func(b *testing.B) {
			l, s, ds := fanOutFixture(b, n)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				s.hdr.SequenceNumber++
				l.fanOut(s, int64(i))
				if i%128 == 127 {
					for _, d := range ds {
						d.q.n, d.q.head = 0, 0
					}
				}
			}
		})
	}
}

// BenchmarkForward measures one subscriber's writer: copy out of the
// cache, rewrite, write (to a no-op writer instead of SRTP and a socket).
// "extensions" also writes abs-send-time and transport-cc and logs the
// packet for the bandwidth estimate, as for a browser.
func BenchmarkForward(b *testing.B) {
	for _, ext := range []bool{false, true} {
		name := "plain"
		if ext {
			name = "extensions"
		}
		b.Run(name, func(b *testing.B) {
			l, s, ds := fanOutFixture(b, 1)
			d := ds[0]
			w := &fakeWriter{}
			bd := &binding{ssrc: 1000, pt: 96, w: w}
			if ext {
				bd.absID, bd.twccID = 2, 3
				d.w.sent = &sentLog{epoch: time.Now()}
				d.w.now = time.Now()
			}
			d.binding.Store(bd)
			d.flowing, d.started = true, true
			e := qentry{l: l, s: s, gen: s.gen.Load()}
			b.ReportAllocs()
			for b.Loop() {
				d.forward(&e)
			}
			if w.n.Load() == 0 {
				b.Fatal("nothing written")
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestSameCodec(t *testing.T) {
	h := func(f string) webrtc.RTPCodecCapability {
		return webrtc.RTPCodecCapability{MimeType: "video/H264", SDPFmtpLine: f}
	}
	if !sameCodec(h("packetization-mode=1;profile-level-id=42e01f"), h("profile-level-id=42001f;packetization-mode=1")) {
		t.Error("H.264 pm=1 variants should be compatible")
	}
	if sameCodec(h("packetization-mode=1"), h("packetization-mode=0")) {
		t.Error("packetization modes differ")
	}
	if !sameCodec(webrtc.RTPCodecCapability{MimeType: "video/VP8"}, webrtc.RTPCodecCapability{MimeType: "video/vp8"}) {
		t.Error("MIME case")
	}
}

func TestREMBNeedsLoss(t *testing.T) {
	p := &Participant{}
	p.setEstimateFromREMB(200_000)
	if p.prefs.estimate.Load() != 0 {
		t.Fatalf("REMB without loss became a budget: %d", p.prefs.estimate.Load())
	}
	noteLoss(&p.prefs, 2) // under 2 %: not congestion
	p.setEstimateFromREMB(200_000)
	if p.prefs.estimate.Load() != 0 {
		t.Fatal("a trickle of loss made REMB a budget")
	}
	noteLoss(&p.prefs, 40)
	p.setEstimateFromREMB(200_000)
	if p.prefs.estimate.Load() != 200_000 {
		t.Fatalf("REMB with loss: budget %d", p.prefs.estimate.Load())
	}
}

type discardSink struct{}

func (discardSink) WriteRTP(_ *rtp.Header, p []byte) (int, error) { return len(p), nil }

// BenchmarkPublishH264 measures a non-WebRTC source's whole ingest path
// per packet (Publication.WriteRTP: copy into the cache, parse, keyframe
// detection, bookkeeping, fan-out to one subscriber whose writer runs
// alongside): 1100-byte H.264 packets, each 30th the start of an IDR
// access unit (SPS), as RTMP, RTSP and SRT sources send them.
func BenchmarkPublishH264(b *testing.B) {
	s, err := New(Config{UDP: "127.0.0.1:0", TCP: "off", PublicIP: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	pub, err := s.Publish(Streams, "bench", nopSource{}, TrackSpec{TrackID: "v", Codec: webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "packetization-mode=1"}, PayloadType: 102}})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.End()
	room, _ := s.LookupRoom(Streams, "bench")
	sub, err := room.Subscribe(pub.ID(), discardSink{}, SinkOptions{SSRC: 9})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	pkt := make([]byte, 12+1100)
	pkt[0], pkt[1] = 0x80, 102
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], uint32(i/3)*3000) // three packets per access unit
		pkt[12] = 0x41                                        // non-IDR slice
		if i%30 == 0 {
			pkt[12] = 0x67 // SPS: a keyframe's first packet
		} else if i%30 == 1 {
			pkt[12] = 0x65 // its IDR, same timestamp
		}
		if err := pub.WriteRTP("", pkt); err != nil {
			b.Fatal(err)
		}
	}
}
