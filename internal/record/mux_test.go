package record

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/internal/record/recordtest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/tap"
)

// opusSilence is a 20 ms Opus frame (CELT, fullband, mono) of silence.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

const frameRate = 25

// h264Stream is n frames of ffmpeg's test picture at 25 fps with 20 ms
// Opus frames between them, in the order a tap hands them out.
func h264Stream(tb testing.TB, n int) ([]Track, []Frame) {
	aus := encoded(tb, n)
	sps, pps := tap.H264ParamSets(aus[0])
	tracks := []Track{{Kind: "video", Codec: "H264", ClockRate: 90000, Params: [][]byte{sps, pps}},
		{Kind: "audio", Codec: "Opus", ClockRate: 48000, Channels: 2}}
	return tracks, interleave(aus, n)
}

// x264Cache keeps the test picture encoded once per test binary.
var x264Cache struct {
	sync.Mutex
	aus [][][]byte
}

// encoded is n frames of the test picture, encoded once.
func encoded(tb testing.TB, n int) [][][]byte {
	x264Cache.Lock()
	defer x264Cache.Unlock()
	if len(x264Cache.aus) < n {
		x264Cache.aus = wholeFrames(rtmptest.X264Frames(tb, max(n, 6*frameRate)))
	}
	return x264Cache.aus[:n]
}

// wholeFrames joins the slices of one picture: X264Frames cuts after
// every slice, and x264's sliced threads make two per picture.
func wholeFrames(pieces [][][]byte) [][][]byte {
	var aus [][][]byte
	for _, p := range pieces {
		last := p[len(p)-1]
		if len(aus) > 0 && len(last) > 1 && last[1]&0x80 == 0 { // first_mb_in_slice != 0
			aus[len(aus)-1] = append(aus[len(aus)-1], p...)
			continue
		}
		aus = append(aus, p)
	}
	return aus
}

// interleave stamps video access units at 25 fps and adds an audio
// frame every 20 ms, starting at an arbitrary PTS.
func interleave(aus [][][]byte, n int) []Frame {
	const start = 7 * time.Hour
	var frames []Frame
	audio := time.Duration(0)
	for i, au := range aus[:n] {
		pts := time.Duration(i) * time.Second / frameRate
		for ; audio < pts+time.Second/frameRate; audio += 20 * time.Millisecond {
			if audio >= pts {
				frames = append(frames, Frame{Track: 1, PTS: start + audio, Key: true, AU: [][]byte{opusSilence}})
			}
		}
		frames = append(frames, Frame{Track: 0, PTS: start + pts, Key: i%frameRate == 0, AU: au})
	}
	return frames
}

// vp8Stream is n VP8 frames of the test picture (ffmpeg libvpx, IVF) and
// Opus frames.
func vp8Stream(tb testing.TB, n int) ([]Track, []Frame) {
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
		"-frames:v", itoa(n), "-c:v", "libvpx", "-g", "25", "-deadline", "realtime", "-f", "ivf", "pipe:1").Output()
	if err != nil {
		tb.Fatalf("ffmpeg libvpx: %v", err)
	}
	var aus [][][]byte
	for b := out[32:]; len(b) >= 12; {
		size := int(binary.LittleEndian.Uint32(b))
		aus = append(aus, [][]byte{b[12 : 12+size]})
		b = b[12+size:]
	}
	tracks := []Track{{Kind: "video", Codec: "VP8", ClockRate: 90000}, {Kind: "audio", Codec: "Opus", ClockRate: 48000, Channels: 2}}
	return tracks, interleave(aus, n)
}

func itoa(n int) string { return strconv.Itoa(n) }

// writeAll muxes frames into a file and returns its path.
func writeAll(t *testing.T, format string, tracks []Track, frames []Frame, close bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out."+format)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := newMuxer(format, f, tracks)
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		if err := m.WriteFrame(fr); err != nil {
			t.Fatal(err)
		}
	}
	if close {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestMuxers(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	const n = 4 * frameRate
	h264Tracks, h264Frames := h264Stream(t, n)
	vp8Tracks, vp8Frames := vp8Stream(t, n)
	for _, c := range []struct {
		name, format string
		tracks       []Track
		frames       []Frame
		codecs       []string
	}{
		{"mp4 h264+opus", FormatMP4, h264Tracks, h264Frames, []string{"h264", "opus"}},
		{"webm vp8+opus", FormatWebM, vp8Tracks, vp8Frames, []string{"opus", "vp8"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := recordtest.Probe(t, writeAll(t, c.format, c.tracks, c.frames, true))
			if !slices.Equal(in.Codecs, c.codecs) {
				t.Errorf("codecs %v, want %v", in.Codecs, c.codecs)
			}
			if d := in.Duration - 4*time.Second; d < -200*time.Millisecond || d > 200*time.Millisecond {
				t.Errorf("duration %v, want 4 s", in.Duration)
			}
			if in.Frames[c.codecs[0]] == 0 || in.Errors != "" {
				t.Errorf("decoded %v; errors %q", in.Frames, in.Errors)
			}
			vcodec := c.codecs[0]
			if c.format == FormatWebM {
				vcodec = c.codecs[1]
			}
			if in.Frames[vcodec] != n {
				t.Errorf("%d video frames decoded, want %d", in.Frames[vcodec], n)
			}
		})
		// Unclosed, as a killed process leaves it: everything but the
		// last second plays.
		t.Run(c.name+" unclosed", func(t *testing.T) {
			in := recordtest.Probe(t, writeAll(t, c.format, c.tracks, c.frames, false))
			vcodec := "h264"
			if c.format == FormatWebM {
				vcodec = "vp8"
			}
			if got := in.Frames[vcodec]; got < n-frameRate-1 {
				t.Errorf("%d video frames decoded from the unclosed file, want >= %d", got, n-frameRate-1)
			}
		})
	}
}

func TestMuxerStartsAtKeyframe(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	tracks, frames := h264Stream(t, 2*frameRate)
	// Drop everything up to the middle of the first GOP: the file starts
	// at the second keyframe, audio before it is left out.
	var late []Frame
	for _, f := range frames {
		if f.PTS-frames[0].PTS >= 500*time.Millisecond {
			late = append(late, f)
		}
	}
	var buf bytes.Buffer
	m, err := newMuxer(FormatMP4, &buf, tracks)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range late[:10] {
		_ = m.WriteFrame(f)
	}
	if buf.Len() != 0 {
		t.Errorf("%d bytes written before the first keyframe", buf.Len())
	}
}
