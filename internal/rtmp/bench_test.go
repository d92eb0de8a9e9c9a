package rtmp

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/tap"
)

// BenchmarkRTMPToCoreLatency: the server's added latency per video frame,
// from the RTMP client's write of an access unit (loopback TCP) to its
// last RTP packet handed to a subscriber: RTMP parsing, repacketizing and
// the media core's fan-out. Frames are paced at 100 per second; the first
// 2 s (the library's track analysis) are not counted.
func BenchmarkRTMPToCoreLatency(b *testing.B) {
	rtmptest.NeedFFmpeg(b)
	aus := rtmptest.X264Frames(b, 250)
	s := newServer(b, Config{})
	u, _ := url.Parse("rtmp://" + s.Addr().String() + "/live/bench")
	c := &gortmplib.Client{URL: u, Publish: true}
	if err := c.Initialize(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sps, pps := tap.H264ParamSets(aus[0])
	track := &gortmplib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{track}}
	if err := w.Initialize(); err != nil {
		b.Fatal(err)
	}
	rtmptest.MeasureLatency(b, s.cfg.SFU, "bench", func(i uint32) time.Time {
		pts := time.Duration(i) * rtmptest.FramePeriod
		au := append(slices.Clone(aus[int(i)%len(aus)]), rtmptest.IndexSEI(i))
		at := time.Now()
		if err := w.WriteH264(track, pts, pts, au); err != nil {
			b.Fatal(err)
		}
		return at
	})
}
