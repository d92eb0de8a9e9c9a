package sfu

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// redPayload builds a RED payload: redundant blocks (each with its
// timestamp offset), then the primary, all with inner payload type pt.
func redPayload(pt uint8, primary []byte, redundant ...[]byte) []byte {
	var b []byte
	for i, r := range redundant {
		off := uint16(960 * (len(redundant) - i))
		b = append(b, 0x80|pt, byte(off>>6), byte(off<<2)|byte(len(r)>>8), byte(len(r)))
	}
	b = append(b, pt)
	for _, r := range redundant {
		b = append(b, r...)
	}
	return append(b, primary...)
}

func TestRedPrimary(t *testing.T) {
	for _, c := range []struct {
		name string
		p    []byte
		want []byte
		ok   bool
	}{
		{"primary only", redPayload(111, []byte("now")), []byte("now"), true},
		{"one redundant", redPayload(111, []byte("now"), []byte("before")), []byte("now"), true},
		{"two redundant", redPayload(111, []byte("now"), []byte("long before"), []byte("before")), []byte("now"), true},
		{"empty", nil, nil, false},
		{"header cut", []byte{0x80 | 111, 0, 0}, nil, false},
		{"block longer than the packet", []byte{0x80 | 111, 0, 0, 200, 111, 1, 2}, nil, false},
	} {
		got, ok := redPrimary(c.p)
		if ok != c.ok || !bytes.Equal(got, c.want) {
			t.Errorf("%s: redPrimary = %q %v, want %q %v", c.name, got, ok, c.want, c.ok)
		}
	}
	p := redPayload(111, []byte("now"), []byte("before"))
	redSetPT(p, 100)
	if p[0] != 0x80|100 || p[4] != 100 {
		t.Errorf("redSetPT: headers % x, want 0xe4 and 0x64", p[:5])
	}
	if got, _ := redPrimary(p); string(got) != "now" {
		t.Errorf("after redSetPT the primary is %q", got)
	}
	if redInnerPT("111/111") != 111 || redInnerPT("96/96/96") != 96 || redInnerPT("") != 111 {
		t.Error("redInnerPT")
	}
}

// FuzzRedPrimary: any payload a publisher sends as RED: no panic, and
// the primary is a tail of it.
func FuzzRedPrimary(f *testing.F) {
	f.Add(redPayload(111, []byte("now"), []byte("before")))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, p []byte) {
		got, ok := redPrimary(p)
		if ok && !bytes.HasSuffix(p, got) {
			t.Fatalf("primary %x is not a tail of %x", got, p)
		}
		q := append([]byte(nil), p...)
		redSetPT(q, 5)
	})
}

// payloadSink records payloads and payload types.
type payloadSink struct {
	mu   sync.Mutex
	got  [][]byte
	pts  []uint8
	more chan struct{}
}

func (s *payloadSink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	s.mu.Lock()
	s.got = append(s.got, append([]byte(nil), payload...))
	s.pts = append(s.pts, h.PayloadType)
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
	return 12 + len(payload), nil
}

func (s *payloadSink) wait(ctx context.Context, t *testing.T, n int) ([][]byte, []uint8) {
	t.Helper()
	for {
		s.mu.Lock()
		if len(s.got) >= n {
			defer s.mu.Unlock()
			return s.got, s.pts
		}
		s.mu.Unlock()
		select {
		case <-s.more:
		case <-ctx.Done():
			t.Fatalf("%d packets, want %d", len(s.got), n)
		}
	}
}

// TestREDTrackSinks: a RED track (Opus with redundancy) reaches a sink
// that asks for RED as published, and any other sink (a recorder, a
// muxer) as the Opus inside, with the publisher's Opus payload type; the
// track says it is Opus.
func TestREDTrackSinks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newTestSFU(t)
	red := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeRED, ClockRate: 48000, Channels: 2, SDPFmtpLine: "109/109"}, PayloadType: 63}
	pub, err := s.Publish(Streams, "red", &memSource{id: "mic"}, TrackSpec{TrackID: "audio", StreamID: "mic", Codec: red})
	if err != nil {
		t.Fatal(err)
	}
	room, _ := s.LookupRoom(Streams, "red")
	if c := room.Tracks()[0].Codec; c != webrtc.MimeTypeOpus {
		t.Fatalf("the track says %s, want Opus", c)
	}
	plain, asRED := &payloadSink{more: make(chan struct{}, 1)}, &payloadSink{more: make(chan struct{}, 1)}
	if _, err := room.Subscribe(pub.ID(), plain, SinkOptions{SSRC: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := room.Subscribe(pub.ID(), asRED, SinkOptions{SSRC: 2, RED: true}); err != nil {
		t.Fatal(err)
	}
	// Five RED packets, then five of plain Opus (a browser switches when
	// a new description lists Opus first).
	var sent [][]byte
	prev := []byte("frame-0")
	for i := 1; i <= 10; i++ {
		primary := []byte{byte('a' + i), 1, 2, 3}
		p, pt := redPayload(109, primary, prev), uint8(63)
		if i > 5 {
			p, pt = primary, 109
		}
		prev = primary
		sent = append(sent, p)
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: uint16(i), Timestamp: uint32(960 * i), SSRC: 7}, Payload: p}).Marshal()
		if err := pub.WriteRTP("", b); err != nil {
			t.Fatal(err)
		}
	}
	got, pts := plain.wait(ctx, t, 10)
	for i, p := range got[:10] {
		want := sent[i]
		if i < 5 {
			want, _ = redPrimary(sent[i])
		}
		if !bytes.Equal(p, want) || pts[i] != 109 {
			t.Fatalf("plain sink, packet %d: pt %d %x, want pt 109 %x (the Opus)", i, pts[i], p, want)
		}
	}
	got, pts = asRED.wait(ctx, t, 10)
	for i, p := range got[:10] {
		want := sent[i]
		if i >= 5 {
			want = append([]byte{109}, sent[i]...) // no redundant block
		}
		if !bytes.Equal(p, want) || pts[i] != 63 {
			t.Fatalf("RED sink, packet %d: pt %d %x, want pt 63 %x", i, pts[i], p, want)
		}
	}
}

// TestWithREDFirst: RED moves to the front of an answer's audio payload
// types; video and other lines stay as they were.
func TestWithREDFirst(t *testing.T) {
	in := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96 63\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:63 red/90000\r\n"
	want := strings.Replace(in, "SAVPF 111 63 0", "SAVPF 63 111 0", 1)
	if got := withREDFirst(in); got != want {
		t.Fatalf("withREDFirst:\n%q\nwant\n%q", got, want)
	}
	plain := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
	if got := withREDFirst(plain); got != plain {
		t.Fatalf("withREDFirst changed an answer without RED: %q", got)
	}
}

// redCodecs registers Opus, then RED around it, as a browser offers them.
func redCodecs(me *webrtc.MediaEngine) error {
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeRED, ClockRate: 48000, Channels: 2, SDPFmtpLine: "111/111"}, PayloadType: 63},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return err
		}
	}
	return nil
}

// TestREDOverWebRTC: a pion publisher offering Opus then RED (a
// browser's order) gets an answer with RED first, and publishes RED; a
// WHEP viewer that takes RED gets the packets as sent, one that does not
// (pion's default codecs) the Opus inside, on its Opus payload type.
func TestREDOverWebRTC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newTestSFU(t)
	pc, err := clientAPIWith(t, redCodecs).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mimeRED, ClockRate: 48000, Channels: 2, SDPFmtpLine: "111/111"}, "audio", "mic")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	part, err := s.Join(Streams, "red", ParticipantOptions{OneShot: true})
	if err != nil {
		t.Fatal(err)
	}
	if answer := negotiate(t, pc, part, "publisher"); !strings.Contains(answer, "m=audio 9 UDP/TLS/RTP/SAVPF 63 111") {
		t.Fatalf("the answer does not put RED first:\n%s", answer)
	}
	plain := newSubscriberPC(t)
	asRED := newSubscriberPCWith(t, clientAPIWith(t, func(me *webrtc.MediaEngine) error {
		if err := redCodecs(me); err != nil {
			return err
		}
		return me.RegisterCodec(vp8Codec, webrtc.RTPCodecTypeVideo) // a WHEP viewer offers video too
	}))
	go func() { // 20 ms of audio each 20 ms, each with the one before inside
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		prev := []byte{0xf8, 0xff, 0xfe, 0}
		for i := 1; ; i++ {
			primary := []byte{0xf8, 0xff, 0xfe, byte(i)}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(960 * i)}, Payload: redPayload(111, primary, prev)})
			prev = primary
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	room, _ := s.LookupRoom(Streams, "red")
	if room.WaitTracks(ctx, 1) < 1 {
		t.Fatal("the RED track was never published")
	}
	joinWHEPOn(t, s, "red", ParticipantOptions{}, plain)
	joinWHEPOn(t, s, "red", ParticipantOptions{}, asRED)
	have := func(ts *testSubscriber) func() bool { return func() bool { return len(ts.pkts["audio"]) >= 5 } }
	plain.waitFor(10*time.Second, "Opus at the viewer without RED", have(plain))
	asRED.waitFor(10*time.Second, "RED at the viewer with RED", have(asRED))
	plain.mu.Lock()
	for _, p := range plain.pkts["audio"] {
		if p.PayloadType != 111 || len(p.Payload) != 4 || p.Payload[0] != 0xf8 {
			t.Fatalf("the viewer without RED got pt %d % x, want Opus (pt 111, 4 bytes)", p.PayloadType, p.Payload)
		}
	}
	plain.mu.Unlock()
	asRED.mu.Lock()
	defer asRED.mu.Unlock()
	for _, p := range asRED.pkts["audio"] {
		primary, ok := redPrimary(p.Payload)
		if p.PayloadType != 63 || !ok || len(primary) != 4 || len(p.Payload) != 4+1+4+4 {
			t.Fatalf("the viewer with RED got pt %d % x, want RED (pt 63) with one redundant block", p.PayloadType, p.Payload)
		}
	}
}
