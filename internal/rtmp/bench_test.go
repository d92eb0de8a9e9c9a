package rtmp

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
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
	var sps, pps []byte
	for _, n := range aus[0] {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	track := &gortmplib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{track}}
	if err := w.Initialize(); err != nil {
		b.Fatal(err)
	}
	sink := rtmptest.NewStampSink()
	sent := map[uint32]time.Time{}
	const period = 10 * time.Millisecond
	start := time.Now()
	write := func(i int) {
		au := slices.Clone(aus[i%len(aus)])
		au = append(au, rtmptest.IndexSEI(uint32(i)))
		sent[uint32(i)] = time.Now()
		if err := w.WriteH264(track, time.Duration(i)*period, time.Duration(i)*period, au); err != nil {
			b.Fatal(err)
		}
	}
	// Warm up until the stream is live and the sink is attached.
	var sub *sfu.Subscription
	i := 0
	for ; sub == nil; i++ {
		write(i)
		if r, ok := s.cfg.SFU.LookupRoom(sfu.Streams, "bench"); ok {
			if ts := r.Tracks(); len(ts) > 0 {
				var err error
				if sub, err = r.Subscribe(ts[0].ID, sink, sfu.SinkOptions{SSRC: 1}); err != nil {
					b.Fatal(err)
				}
			}
		}
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * period))) // pacing the media, not waiting for an event
	}
	defer sub.Close()
	first := uint32(i + 25) // past the replayed keyframe
	b.ResetTimer()
	for n := 0; n < b.N+25; n++ {
		write(i)
		i++
		time.Sleep(time.Until(start.Add(time.Duration(i) * period)))
	}
	if !sink.Wait(uint32(i-1), 5*time.Second) {
		b.Fatal("the last frame never arrived")
	}
	b.StopTimer()
	sink.Report(b, sent, first)
}
