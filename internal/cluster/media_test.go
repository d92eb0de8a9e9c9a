package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/parley/parley/internal/sfu"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestRelayWire: a packet survives the track message's round trip; end
// is its own message; what is not a valid message is refused.
func TestRelayWire(t *testing.T) {
	h := rtp.Header{Version: 2, Marker: true, PayloadType: 96, SequenceNumber: 65535, Timestamp: 1 << 31, SSRC: 7}
	payload := []byte("a frame's bytes")
	b, err := appendRTPMsg(nil, &h, payload)
	if err != nil {
		t.Fatal(err)
	}
	end, pkt, err := decodeTrackMsg(b)
	if err != nil || end {
		t.Fatalf("decode: %v end=%v", err, end)
	}
	var p rtp.Packet
	if err := p.Unmarshal(pkt); err != nil || p.SequenceNumber != h.SequenceNumber || p.Timestamp != h.Timestamp || !p.Marker || !bytes.Equal(p.Payload, payload) {
		t.Fatalf("round trip: %+v %v", p, err)
	}
	if end, _, err := decodeTrackMsg([]byte{msgEnd}); !end || err != nil {
		t.Fatalf("end message: %v %v", end, err)
	}
	for name, bad := range map[string][]byte{
		"empty":        {},
		"unknown":      {'x', 0x80},
		"end + body":   {msgEnd, 1},
		"short":        append([]byte{msgRTP}, make([]byte, 11)...),
		"version 0":    append([]byte{msgRTP}, make([]byte, 20)...),
		"too long":     append(append([]byte{msgRTP, 0x80}, make([]byte, 11)...), make([]byte, maxRelayRTP)...),
		"bad padding":  {msgRTP, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200},
		"zero padding": {msgRTP, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, // FuzzRelayDecode found it
	} {
		if _, _, err := decodeTrackMsg(bad); !errors.Is(err, errRelayMsg) {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
	}
}

// TestRelayTracksChecked: a track list with an unknown codec, a bad
// clock rate, a line break in fmtp, a duplicate or too many tracks is
// refused; a good one passes.
func TestRelayTracksChecked(t *testing.T) {
	good := relayTrack{ID: "whip-1/v", Publisher: "whip-1", TrackID: "v", StreamID: "s", Mime: "video/VP8", Clock: 90000, PT: 96}
	enc := func(ts ...relayTrack) []byte {
		b, _ := json.Marshal(relayTracks{Tracks: ts})
		return b
	}
	if ts, err := decodeTracks(enc(good)); err != nil || len(ts) != 1 {
		t.Fatalf("good list: %v", err)
	}
	mod := func(f func(*relayTrack)) relayTrack { x := good; f(&x); return x }
	many := make([]relayTrack, maxRelayTrack+1)
	for i := range many {
		many[i] = mod(func(x *relayTrack) { x.ID = string(rune('a' + i)) })
	}
	for name, b := range map[string][]byte{
		"not JSON":   []byte("{"),
		"none":       enc(),
		"codec":      enc(mod(func(x *relayTrack) { x.Mime = "video/evil" })),
		"clock":      enc(mod(func(x *relayTrack) { x.Clock = 0 })),
		"fmtp":       enc(mod(func(x *relayTrack) { x.Fmtp = "a\r\nb" })),
		"pt":         enc(mod(func(x *relayTrack) { x.PT = 200 })),
		"id":         enc(mod(func(x *relayTrack) { x.ID = "a b" })),
		"duplicate":  enc(good, good),
		"too many":   enc(many...),
		"origin err": []byte(`{"tracks":[],"err":"not live here"}`),
	} {
		if _, err := decodeTracks(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzRelayDecode: nothing a node receives from NATS panics the decoders,
// and what they accept is within bounds.
func FuzzRelayDecode(f *testing.F) {
	b, _ := appendRTPMsg(nil, &rtp.Header{Version: 2, SequenceNumber: 1}, []byte{1, 2, 3})
	f.Add(b)
	f.Add([]byte{msgEnd})
	f.Add(appendLease(nil, 2))
	f.Add([]byte(`{"tracks":[{"id":"x","mime":"audio/opus","clock":48000,"channels":2,"pt":111,"publisher":"p"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if end, pkt, err := decodeTrackMsg(b); err == nil && !end {
			if len(pkt) < 12 || len(pkt) > maxRelayRTP {
				t.Fatalf("accepted a packet of %d bytes", len(pkt))
			}
			var p rtp.Packet
			if err := p.Unmarshal(pkt); err != nil {
				t.Fatalf("accepted a packet pion cannot parse: %v", err)
			}
		}
		if n, ok := decodeLease(b); ok && (n < 0 || n > maxRelayTrack) {
			t.Fatalf("accepted a lease of %d tracks", n)
		}
		if ts, err := decodeTracks(b); err == nil {
			if len(ts) == 0 || len(ts) > maxRelayTrack {
				t.Fatalf("accepted %d tracks", len(ts))
			}
			for _, x := range ts {
				if x.check() != nil {
					t.Fatalf("accepted a bad track %+v", x)
				}
			}
		}
	})
}

// TestStreamRelayLateTrack: an edge relaying a stream's video picks up
// the audio track its origin publishes later (at the next lease), and
// each track once; the origin's tracks ending end the edge's.
func TestStreamRelayLateTrack(t *testing.T) {
	srv := natsServer(t, -1, t.TempDir())
	_, sa := mediaNode(t, "a", srv.ClientURL(), time.Hour)
	mb, sb := mediaNode(t, "b", srv.ClientURL(), time.Hour)
	publish := func(mime string, clock uint32) *sfu.Publication {
		p, err := sa.Publish(sfu.Streams, "late", benchSource{}, sfu.TrackSpec{TrackID: mime, StreamID: "late",
			Codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: clock}, PayloadType: 96}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	video := publish(webrtc.MimeTypeVP8, 90000)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	poll := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
		}
	}
	poll("b relaying the video", func() bool { return mb.Demand(ctx, "late") })
	tracks := func() int {
		r, ok := sb.LookupRoom(sfu.Streams, "late")
		if !ok {
			return 0
		}
		return len(r.Tracks())
	}
	if n := tracks(); n != 1 {
		t.Fatalf("b has %d tracks, want the video", n)
	}
	audio := publish(webrtc.MimeTypeOpus, 48000)
	poll("b relaying the audio too", func() bool { return tracks() == 2 })
	if r, s := mb.Stats().Relays.Load(), mb.Stats().RelaysStarted.Load(); r != 2 || s != 2 {
		t.Errorf("b relays %d tracks, %d started; want 2 and 2", r, s)
	}
	video.End()
	audio.End()
	poll("b's relay ended with the origin's tracks", func() bool { return tracks() == 0 && mb.Stats().Relays.Load() == 0 })
}
