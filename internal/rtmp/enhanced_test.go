package rtmp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os/exec"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
)

// ivfFrames encodes 2 s of a test picture with an ffmpeg encoder into IVF
// and returns the frames.
func ivfFrames(t *testing.T, encoder ...string) [][]byte {
	t.Helper()
	args := append([]string{"-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
		"-frames:v", "50", "-g", "25"}, encoder...)
	out, err := exec.Command("ffmpeg", append(args, "-f", "ivf", "pipe:1")...).Output()
	if err != nil {
		t.Fatalf("ffmpeg %v: %v", encoder, err)
	}
	r, _, err := ivfreader.NewWith(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		f, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
}

type countSink struct{ got chan struct{} }

func (s countSink) WriteRTP(_ *rtp.Header, p []byte) (int, error) {
	select {
	case s.got <- struct{}{}:
	default:
	}
	return len(p), nil
}

// TestEnhancedRTMP: VP9, AV1 and H.265 published over enhanced RTMP become
// SFU tracks that a subscriber (which starts on a keyframe) receives.
func TestEnhancedRTMP(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	for _, c := range []struct {
		name    string
		mime    string
		codec   codecs.Codec
		encoder []string
	}{
		{"VP9", "video/VP9", &codecs.VP9{}, []string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k"}},
		{"AV1", "video/AV1", &codecs.AV1{}, []string{"-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8", "-b:v", "500k"}},
		{"H265", "video/H265", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var frames [][]byte
			var aus [][][]byte
			if c.name == "H265" {
				var vps, sps, pps []byte
				aus, vps, sps, pps = rtmptest.X265Frames(t, 50)
				c.codec = &codecs.H265{VPS: vps, SPS: sps, PPS: pps}
				frames = make([][]byte, len(aus))
			} else {
				frames = ivfFrames(t, c.encoder...)
			}
			s := newServer(t, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			u, _ := url.Parse("rtmp://" + s.Addr().String() + "/live/e")
			cl := &gortmplib.Client{URL: u, Publish: true}
			if err := cl.Initialize(ctx); err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			track := &gortmplib.Track{Codec: c.codec}
			w := &gortmplib.Writer{Conn: cl, Tracks: []*gortmplib.Track{track}}
			if err := w.Initialize(); err != nil {
				t.Fatal(err)
			}
			sink := countSink{got: make(chan struct{}, 1)}
			var sub *sfu.Subscription
			for i := 0; ; i++ {
				pts := time.Duration(i) * 40 * time.Millisecond
				f := frames[i%len(frames)]
				var err error
				switch c.name {
				case "AV1":
					var tu av1.Bitstream
					if err = tu.Unmarshal(f); err == nil {
						err = w.WriteAV1(track, pts, tu)
					}
				case "H265":
					err = w.WriteH265(track, pts, pts, aus[i%len(aus)])
				default:
					err = w.WriteVP9(track, pts, f)
				}
				if err != nil {
					t.Fatal(err)
				}
				if sub == nil {
					if r, ok := s.cfg.SFU.LookupRoom(sfu.Streams, "e"); ok && len(r.Tracks()) == 1 {
						ti := r.Tracks()[0]
						if ti.Codec != c.mime {
							t.Fatalf("track codec %s, want %s", ti.Codec, c.mime)
						}
						if sub, err = r.Subscribe(ti.ID, sink, sfu.SinkOptions{SSRC: 1}); err != nil {
							t.Fatal(err)
						}
						defer sub.Close()
					}
				}
				select {
				case <-sink.got:
					return // a keyframe started the subscription, and packets flow
				case <-ctx.Done():
					t.Fatalf("no %s packets reached the subscriber after %d frames", c.name, i)
				default:
				}
				time.Sleep(10 * time.Millisecond) // pacing the frames, not waiting for an event
			}
		})
	}
}
