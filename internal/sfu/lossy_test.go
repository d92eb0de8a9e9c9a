package sfu

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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
	}{{video, absSendTimeURI}, {video, sdp.TransportCCURI}, {audio, audioLevelURI}, {audio, sdp.TransportCCURI}} {
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
	// One transport, one counter: the numbers of both tracks together form
	// a dense range (the publisher's own numbers would not).
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
	pub := newTestPublisher(t, s, room, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pub.run(ctx, 30) }()
	t.Cleanup(func() { cancel(); <-done })
	r, _ := s.LookupRoom(Streams, room)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	r.WaitTracks(wctx, tracks)
	return pub
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
