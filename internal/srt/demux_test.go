package srt

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// demuxCount runs the demuxer over ts and counts what comes out.
type demuxCount struct {
	tracks          tsTracks
	video, aac, ops int
	lastVideo       time.Duration
	backwards       int
}

func runDemux(ts []byte) (demuxCount, error) {
	var c demuxCount
	rd, err := openTS(bytes.NewReader(ts))
	if err != nil {
		return c, err
	}
	c.tracks = pickTracks(rd.Tracks())
	err = demux(rd, c.tracks, tsSinks{
		h264: func(au [][]byte, pts time.Duration) {
			if c.video > 0 && pts < c.lastVideo-time.Second {
				c.backwards++
			}
			c.video, c.lastVideo = c.video+1, pts
		},
		aac:         func([]byte, time.Duration) { c.aac++ },
		opus:        func([]byte, time.Duration) { c.ops++ },
		decodeError: func(error) {},
	})
	return c, err
}

func TestDemux(t *testing.T) {
	for _, c := range []struct {
		file            string
		video, aac, ops bool
		ignored         int
	}{
		{"h264_aac.ts", true, true, false, 0},
		{"h264_opus.ts", true, false, true, 0},
		{"h265.ts", true, false, false, 0},
	} {
		ts, err := os.ReadFile("testdata/" + c.file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := runDemux(ts)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("%s: %v", c.file, err)
		}
		if (got.video > 0) != c.video || (got.aac > 0) != c.aac || (got.ops > 0) != c.ops || len(got.tracks.ignored) != c.ignored {
			t.Errorf("%s: %d video, %d AAC, %d Opus, ignored %v", c.file, got.video, got.aac, got.ops, got.tracks.ignored)
		}
		if got.backwards > 0 {
			t.Errorf("%s: video time went back %d times", c.file, got.backwards)
		}
	}
}

// TestTicks90k: 90 kHz ticks to durations, also past the 33-bit wrap (the
// TimeDecoder unwraps into int64) without overflowing.
func TestTicks90k(t *testing.T) {
	for in, want := range map[int64]time.Duration{
		0: 0, 90000: time.Second, 45: 500 * time.Microsecond, -90000: -time.Second,
		1 << 33: time.Duration(1<<33) * time.Second / 90000, 90000 * 3600 * 1000: 1000 * time.Hour,
	} {
		if got := ticks90k(in); got != want {
			t.Errorf("ticks90k(%d) = %v, want %v", in, got, want)
		}
	}
}

// FuzzDemux feeds raw bytes to the MPEG-TS demuxer as a publisher's
// stream: it must end with an error or io.EOF, never panic.
func FuzzDemux(f *testing.F) {
	for _, name := range []string{"h264_aac.ts", "h264_opus.ts", "h265.ts"} {
		ts, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ts)
		f.Add(ts[:len(ts)/3])
	}
	f.Add([]byte{0x47})
	f.Fuzz(func(t *testing.T, ts []byte) {
		_, _ = runDemux(ts)
	})
}
