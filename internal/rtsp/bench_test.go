package rtsp

import (
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/tap"
)

// BenchmarkRTSPToCoreLatency: the server's added latency per video frame,
// from an RTSP client's write of an access unit's last RTP packet
// (interleaved on loopback TCP) to its last RTP packet handed to a
// subscriber: RTSP reading, H.264 depacketizing and repacketizing, and
// the media core's fan-out. x264 frames (640×360, 1 Mbit/s) at 100 per
// second, each ending with an index SEI the subscriber stamps.
func BenchmarkRTSPToCoreLatency(b *testing.B) {
	rtmptest.NeedFFmpeg(b)
	aus := rtmptest.X264Frames(b, 250)
	sps, pps := tap.H264ParamSets(aus[0])
	s := newServer(b, Config{UDP: "off"})
	forma := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps, PPS: pps}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{forma}}}}
	tcp := gortsplib.ProtocolTCP
	c := gortsplib.Client{Protocol: &tcp}
	if err := c.StartRecording("rtsp://"+s.Addr().String()+"/bench", desc); err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	enc, err := forma.CreateEncoder()
	if err != nil {
		b.Fatal(err)
	}
	rtmptest.MeasureLatency(b, s.cfg.SFU, "bench", func(i uint32) (at time.Time) {
		pkts, err := enc.Encode(append(slices.Clone(aus[int(i)%len(aus)]), rtmptest.IndexSEI(i)))
		if err != nil {
			b.Fatal(err)
		}
		for k, pkt := range pkts {
			pkt.Timestamp = i * 900 // 90 kHz ticks of rtmptest.FramePeriod
			if k == len(pkts)-1 {
				at = time.Now()
			}
			if err := c.WritePacketRTP(desc.Medias[0], pkt); err != nil {
				b.Fatal(err)
			}
		}
		return at
	})
}
