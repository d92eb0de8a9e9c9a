package camera

import (
	"log/slog"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/sfu"
)

type nopSource struct{}

func (nopSource) SourceID() string       { return "cam" }
func (nopSource) RequestKeyframe(uint32) {}

type nopSink struct{}

func (nopSink) WriteRTP(_ *rtp.Header, p []byte) (int, error) { return len(p), nil }

// TestViewersCountSinks: a stream read only by a sink (an HLS muxer, a
// recording, a push: no participant) is watched, so an on-demand camera
// keeps pulling it.
func TestViewersCountSinks(t *testing.T) {
	s, err := sfu.New(sfu.Config{UDP: "127.0.0.1:0", TCP: "off", PublicIP: "127.0.0.1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := &Manager{cfg: Config{SFU: s}}
	pub, err := s.Publish(sfu.Streams, "door", nopSource{}, sfu.TrackSpec{TrackID: "video",
		Codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, PayloadType: 102}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.End()
	if n := m.viewers("door"); n != 0 {
		t.Fatalf("%d viewers before any", n)
	}
	room, _ := s.LookupRoom(sfu.Streams, "door")
	sub, err := room.Subscribe(pub.ID(), nopSink{}, sfu.SinkOptions{SSRC: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := m.viewers("door"); n != 1 {
		t.Fatalf("%d viewers with a sink reading, want 1", n)
	}
	sub.Close()
}
