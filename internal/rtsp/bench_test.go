package rtsp

import (
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
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
	var sps, pps []byte
	for _, n := range aus[0] {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
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
	sink := rtmptest.NewStampSink()
	sent := map[uint32]time.Time{}
	const period = 10 * time.Millisecond
	start := time.Now()
	write := func(i int) {
		au := append(slices.Clone(aus[i%len(aus)]), rtmptest.IndexSEI(uint32(i)))
		pkts, err := enc.Encode(au)
		if err != nil {
			b.Fatal(err)
		}
		for k, pkt := range pkts {
			pkt.Timestamp = uint32(i) * 900
			if k == len(pkts)-1 {
				sent[uint32(i)] = time.Now()
			}
			if err := c.WritePacketRTP(desc.Medias[0], pkt); err != nil {
				b.Fatal(err)
			}
		}
	}
	var sub *sfu.Subscription
	i := 0
	for ; sub == nil; i++ { // warm up until the stream is live and the sink attached
		write(i)
		if r, ok := s.cfg.SFU.LookupRoom(sfu.Streams, "bench"); ok {
			if ts := r.Tracks(); len(ts) > 0 {
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
