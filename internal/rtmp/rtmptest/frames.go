package rtmptest

import (
	"bytes"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/parley/parley/internal/sfu"
	"github.com/pion/rtp"
)

// X264Frames encodes n frames of a test picture (no B-frames, a keyframe
// every 25) and returns them as access units.
func X264Frames(tb testing.TB, n int) [][][]byte {
	tb.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "testsrc2=size=640x360:rate=25", "-frames:v", strconv.Itoa(n), "-c:v", "libx264", "-profile:v", "high",
		"-tune", "zerolatency", "-g", "25", "-b:v", "1M", "-f", "h264", "pipe:1").Output()
	if err != nil {
		tb.Fatalf("ffmpeg: %v", err)
	}
	var aus [][][]byte
	var au [][]byte
	for _, n := range splitAnnexB(out) {
		au = append(au, n)
		if t := h264.NALUType(n[0] & 0x1f); t == h264.NALUTypeIDR || t == h264.NALUTypeNonIDR {
			aus = append(aus, au)
			au = nil
		}
	}
	return aus
}

// X265Frames encodes n frames of a test picture (320x240) with libx265
// (no B-frames, a keyframe every 25) and returns its access units and its
// parameter sets.
func X265Frames(tb testing.TB, n int) (aus [][][]byte, vps, sps, pps []byte) {
	tb.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
		"-frames:v", strconv.Itoa(n), "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "bframes=0:keyint=25:log-level=error",
		"-f", "hevc", "pipe:1").Output()
	if err != nil {
		tb.Fatalf("ffmpeg libx265: %v", err)
	}
	var au [][]byte
	for _, n := range splitAnnexB(out) {
		if len(n) < 2 {
			continue
		}
		switch n[0] >> 1 & 0x3f {
		case 32:
			vps = n
		case 33:
			sps = n
		case 34:
			pps = n
		}
		au = append(au, n)
		if n[0]>>1&0x3f < 32 { // a slice ends the access unit (one slice per picture here)
			aus = append(aus, au)
			au = nil
		}
	}
	return aus, vps, sps, pps
}

// splitAnnexB cuts an encoder's Annex B output into NAL units.
func splitAnnexB(b []byte) [][]byte {
	var nalus [][]byte
	for _, part := range bytes.Split(b, []byte{0, 0, 1}) {
		if part = bytes.TrimRight(part, "\x00"); len(part) > 0 {
			nalus = append(nalus, part)
		}
	}
	return nalus
}

// IndexSEI is a 9-byte SEI NAL unit carrying a frame index: appended to
// an access unit, it travels as its own small RTP packet (the unit's
// last), so a subscriber can tell when each frame got through. The index
// goes in 7 bits per byte with the top bit set, so no byte is zero and
// no start code can appear inside the unit.
func IndexSEI(i uint32) []byte {
	return []byte{6, 5, 0x80 | byte(i>>21&0x7f), 0x80 | byte(i>>14&0x7f), 0x80 | byte(i>>7&0x7f), 0x80 | byte(i&0x7f), 0x81, 0x81, 0x80}
}

// seiIndex reads IndexSEI's index back.
func seiIndex(p []byte) (uint32, bool) {
	if len(p) != 9 || p[0] != 6 || p[1] != 5 {
		return 0, false
	}
	return uint32(p[2]&0x7f)<<21 | uint32(p[3]&0x7f)<<14 | uint32(p[4]&0x7f)<<7 | uint32(p[5]&0x7f), true
}

// StampSink is a core subscriber that stamps when each frame's index SEI
// is handed to it.
type StampSink struct {
	mu   sync.Mutex
	at   map[uint32]time.Time
	seen chan struct{}
}

// NewStampSink makes an empty StampSink.
func NewStampSink() *StampSink {
	return &StampSink{at: map[uint32]time.Time{}, seen: make(chan struct{}, 1)}
}

// WriteRTP implements sfu.Sink.
func (s *StampSink) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	if i, ok := seiIndex(p); ok && h.Marker {
		s.mu.Lock()
		s.at[i] = time.Now()
		s.mu.Unlock()
		select {
		case s.seen <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// Wait waits for frame i to arrive; false after within.
func (s *StampSink) Wait(i uint32, within time.Duration) bool {
	deadline := time.After(within)
	for {
		s.mu.Lock()
		_, ok := s.at[i]
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-s.seen:
		case <-deadline:
			return false
		}
	}
}

// Report gives the benchmark the latency percentiles of the frames from
// first on, against when each was sent.
func (s *StampSink) Report(b *testing.B, sent map[uint32]time.Time, first uint32) {
	var lat []time.Duration
	s.mu.Lock()
	for k, t := range s.at {
		if k >= first {
			lat = append(lat, t.Sub(sent[k]))
		}
	}
	s.mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no frames measured")
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(len(lat)), "frames")
}

// FramePeriod is the pace MeasureLatency writes frames at: 100 a second.
const FramePeriod = 10 * time.Millisecond

// MeasureLatency is the body of an ingest latency benchmark: it calls
// write for frame 0, 1, … every FramePeriod (write appends IndexSEI(i) to
// the frame and returns when it handed it over), subscribes a StampSink
// to the first track of stream once it is live, then writes b.N frames
// more (and 25 past the replayed keyframe, not counted) and reports the
// percentiles of the time from handing over to the subscriber.
func MeasureLatency(b *testing.B, m *sfu.SFU, stream string, write func(i uint32) time.Time) {
	b.Helper()
	sink := NewStampSink()
	sent := map[uint32]time.Time{}
	start := time.Now()
	var sub *sfu.Subscription
	i := uint32(0)
	// pace waits until frame i is due: the media's rate, not a wait for an event.
	pace := func() { time.Sleep(time.Until(start.Add(time.Duration(i) * FramePeriod))) }
	for sub == nil { // warm up until the stream is live and the sink attached
		sent[i] = write(i)
		if r, ok := m.LookupRoom(sfu.Streams, stream); ok {
			if ts := r.Tracks(); len(ts) > 0 {
				var err error
				if sub, err = r.Subscribe(ts[0].ID, sink, sfu.SinkOptions{SSRC: 1}); err != nil {
					b.Fatal(err)
				}
			}
		}
		i++
		pace()
	}
	defer sub.Close()
	first := i + 25 // past the replayed keyframe
	b.ResetTimer()
	for n := 0; n < b.N+25; n++ {
		sent[i] = write(i)
		i++
		pace()
	}
	if !sink.Wait(i-1, 5*time.Second) {
		b.Fatal("the last frame never arrived")
	}
	b.StopTimer()
	sink.Report(b, sent, first)
}
