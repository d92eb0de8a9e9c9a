package record

import (
	"log/slog"
	"testing"
	"time"

	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// BenchmarkRecord writes one second of a stream per op through a session
// into a real file: MP4 of 25 H.264 frames (640x360 test picture, ~1
// Mbit/s) and 50 Opus frames, WebM of 25 VP8 frames (320x240) and 50
// Opus frames. It is the recorder's own cost (the tap's depacketizing is
// shared with every reader of the stream): cores/stream is the CPU time
// per second of media.
func BenchmarkRecord(b *testing.B) {
	rtmptest.NeedFFmpeg(b)
	for _, c := range []struct {
		format string
		stream func(testing.TB, int) ([]Track, []Frame)
	}{{FormatMP4, h264Stream}, {FormatWebM, vp8Stream}} {
		b.Run(c.format, func(b *testing.B) {
			tracks, frames := c.stream(b, 6*frameRate)
			s := &session{opts: Options{Format: c.format, SegmentDuration: time.Hour}, dir: b.TempDir(), prefix: "bench",
				tracks: tracks, format: c.format, log: slog.New(slog.DiscardHandler)}
			const seconds = 6 // of media in frames
			b.ResetTimer()
			var offset time.Duration
			for i := 0; i < b.N; i += seconds {
				for _, f := range frames {
					f.PTS += offset
					if err := s.write(f); err != nil {
						b.Fatal(err)
					}
				}
				offset += seconds * time.Second
			}
			b.StopTimer()
			_ = s.closeFile()
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "cores/stream")
		})
	}
}
