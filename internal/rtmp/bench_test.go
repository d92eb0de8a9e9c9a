package rtmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
)

// x264Frames encodes n frames of a test picture (no B-frames, a keyframe
// every 25) and returns them as access units.
func x264Frames(tb testing.TB, n int) [][][]byte {
	tb.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "testsrc2=size=640x360:rate=25", "-frames:v", strconv.Itoa(n), "-c:v", "libx264", "-profile:v", "high",
		"-tune", "zerolatency", "-g", "25", "-b:v", "1M", "-f", "h264", "pipe:1").Output()
	if err != nil {
		tb.Fatalf("ffmpeg: %v", err)
	}
	var nalus [][]byte // split at the start codes
	for _, part := range bytes.Split(out, []byte{0, 0, 1}) {
		if part = bytes.TrimRight(part, "\x00"); len(part) > 0 {
			nalus = append(nalus, part)
		}
	}
	var aus [][][]byte
	var au [][]byte
	for _, n := range nalus {
		au = append(au, n)
		if t := h264.NALUType(n[0] & 0x1f); t == h264.NALUTypeIDR || t == h264.NALUTypeNonIDR {
			aus = append(aus, au)
			au = nil
		}
	}
	return aus
}

// stampSink records when each frame's marked SEI (the access unit's last
// NAL unit, which carries its index) leaves the core.
type stampSink struct {
	mu   sync.Mutex
	at   map[uint32]time.Time
	seen chan uint32
}

func (s *stampSink) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	if len(p) == 9 && p[0]&0x1f == 6 && h.Marker {
		i := binary.BigEndian.Uint32(p[1:])
		s.mu.Lock()
		s.at[i] = time.Now()
		s.mu.Unlock()
		select {
		case s.seen <- i:
		default:
		}
	}
	return len(p), nil
}

// BenchmarkRTMPToCoreLatency: the server's added latency per video frame,
// from the RTMP client's write of an access unit (loopback TCP) to its
// last RTP packet handed to a subscriber: RTMP parsing, repacketizing and
// the media core's fan-out. Frames are paced at 100 per second; the first
// 2 s (the library's track analysis) are not counted.
func BenchmarkRTMPToCoreLatency(b *testing.B) {
	rtmptest.NeedFFmpeg(b)
	aus := x264Frames(b, 250)
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
	sink := &stampSink{at: map[uint32]time.Time{}, seen: make(chan uint32, 1)}
	sent := map[uint32]time.Time{}
	const period = 10 * time.Millisecond
	start := time.Now()
	write := func(i int) {
		au := slices.Clone(aus[i%len(aus)])
		sei := []byte{6, 0, 0, 0, 0, 0, 0, 0, 0x80}
		binary.BigEndian.PutUint32(sei[1:], uint32(i))
		au = append(au, sei)
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
	deadline := time.After(5 * time.Second)
	for {
		sink.mu.Lock()
		_, done := sink.at[uint32(i-1)]
		sink.mu.Unlock()
		if done {
			break
		}
		select {
		case <-sink.seen:
		case <-deadline:
			b.Fatal("the last frame never arrived")
		}
	}
	b.StopTimer()
	var lat []time.Duration
	sink.mu.Lock()
	for k, t := range sink.at {
		if k >= first {
			lat = append(lat, t.Sub(sent[k]))
		}
	}
	sink.mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no frames measured")
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(lat)), "frames")
}
