package tap_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
)

// askedSource is a publisher that, like a browser, sends a keyframe only
// when asked (a PLI).
type askedSource struct{ asked atomic.Int32 }

func (a *askedSource) SourceID() string            { return "browser-like" }
func (a *askedSource) RequestKeyframe(ssrc uint32) { a.asked.Add(1) }

// publishAsked publishes H.264 into stream "s" from src: a keyframe only
// after each request, other frames in between, 25 a second, until ctx ends.
func publishAsked(ctx context.Context, t *testing.T, m *sfu.SFU, src *askedSource) <-chan struct{} {
	t.Helper()
	var key [][]byte
	var others [][][]byte
	for _, au := range rtmptest.X264Frames(t, 25) {
		if h264.IsRandomAccess(au) {
			if key == nil {
				key = au // the first, with its SPS and PPS
			}
		} else {
			others = append(others, au)
		}
	}
	pub, err := m.Publish(sfu.Streams, "s", src, sfu.TrackSpec{TrackID: "video", StreamID: "s", Codec: webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "packetization-mode=1;profile-level-id=42e01f"},
		PayloadType:        96}})
	if err != nil {
		t.Fatal(err)
	}
	enc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer pub.End()
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		answered := int32(0)
		for i := 0; ; i++ {
			au := others[i%len(others)]
			if n := src.asked.Load(); n > answered {
				answered, au = n, key
			}
			pkts, err := enc.Encode(au)
			if err != nil {
				t.Error(err)
				return
			}
			for _, p := range pkts {
				p.Timestamp = uint32(i * 3600)
				b, _ := p.Marshal()
				_ = pub.WriteRTP("", b)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return done
}

// TestKeyframeRequests: a publisher that sends keyframes only when asked
// (a browser) gets asked every Config.KeyframeEvery while a tap reads it,
// so its readers (HLS segments, recordings) get a keyframe that often;
// with KeyframeEvery negative only the subscription's first request comes.
func TestKeyframeRequests(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	for _, every := range []time.Duration{200 * time.Millisecond, -1} {
		m, err := sfu.New(sfu.Config{UDP: "127.0.0.1:0", TCP: "off", PublicIP: "127.0.0.1", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		h := tap.New(ctx, tap.Config{SFU: m, KeyframeEvery: every})
		src := &askedSource{}
		done := publishAsked(ctx, t, m, src)
		r := open(t, h, tap.Options{})
		if f := read(t, r); !f.Key {
			t.Fatalf("first frame is not a keyframe")
		}
		// 50 frames: 2 s of video at 25 a second.
		keys := 0
		for range 50 {
			if read(t, r).Key {
				keys++
			}
		}
		r.Close()
		cancel()
		<-done
		h.Wait()
		m.Close()
		t.Logf("KeyframeEvery %v: %d keyframes in 50 frames after the first, %d requests", every, keys, src.asked.Load())
		// The SFU asks a publisher at most every 500 ms (its PLI limit).
		if every > 0 && keys < 2 {
			t.Errorf("KeyframeEvery %v: %d keyframes in 2 s, want one about every 500 ms", every, keys)
		}
		if every < 0 && keys != 0 {
			t.Errorf("KeyframeEvery off: %d keyframes after the first, want none", keys)
		}
	}
}
