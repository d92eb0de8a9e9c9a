package fanout

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/bench/synth"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and three pion clients")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Run(ctx, Options{Viewers: 2, Warmup: time.Second, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 2 || res.Expected == 0 || res.PublisherPackets == 0 {
		t.Fatalf("result: %+v", res)
	}
	if res.LatencyP50 <= 0 || res.FirstPacketP50 <= 0 || res.ServerRSSMB <= 0 {
		t.Fatalf("missing figures: %+v", res)
	}
	if !strings.Contains(res.Table(), "packet loss") {
		t.Fatal("table")
	}
}

// TestRunRTMP: an RTMP publisher (H.264 that ffmpeg encoded, Opus over
// enhanced RTMP) reaches every WHEP viewer, with video latency by
// frame-index SEI and audio latency by payload hash; with AAC the
// server's transcoder's Opus reaches them too (no audio latency: the
// payloads change).
func TestRunRTMP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server, ffmpeg, an RTMP client and pion viewers")
	}
	rtmptest.NeedFFmpeg(t)
	for _, c := range []struct {
		audio   string
		viewers int
		table   string
	}{{AudioOpus, 4, "+ Opus over enhanced RTMP"}, {AudioAAC, 2, "+ AAC (the server transcodes it to Opus"}} {
		t.Run(c.audio, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			res, err := Run(ctx, Options{Source: SourceRTMP, RTMPAudio: c.audio, Viewers: c.viewers, Warmup: time.Second, Duration: 3 * time.Second, VideoBitrate: 500_000})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", res.Table())
			t.Logf("published %d packets (estimate), viewers received %d", res.PublisherPackets, res.Received)
			if res.Source != SourceRTMP || res.Connected != c.viewers || res.VideoViewers != c.viewers || res.AudioViewers != c.viewers {
				t.Fatalf("not every viewer received video and audio: %+v", res)
			}
			if res.Expected == 0 || res.PublisherPackets == 0 || res.VideoLatencyP50 <= 0 || (c.audio == AudioOpus) != (res.AudioLatencyP50 > 0) {
				t.Fatalf("missing figures: %+v", res)
			}
			if !strings.Contains(res.Table(), "rtmp: H.264") || !strings.Contains(res.Table(), c.table) {
				t.Fatal("the table does not name the source")
			}
		})
	}
}

func TestRefusesBadSource(t *testing.T) {
	for _, o := range []Options{
		{Source: "srt"},
		{Source: SourceRTMP, RTMPAudio: "mp3"},
		{RTMPAudio: AudioAAC},
		{Source: SourceRTMP, External: true},
		{Source: SourceRTMP, URL: "http://127.0.0.1:1", RTMPURL: "rtmp://192.0.2.1:1935"},
		{Source: SourceRTMP, URL: "http://127.0.0.1:1"},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestParseH264Clip(t *testing.T) {
	sps, pps := []byte{0x67, 0x64, 0, 0x1e, 1}, []byte{0x68, 2}
	idr, p := []byte{0x65, 0x88, 0}, []byte{0x41, 0x9a, 3}
	var b []byte
	for _, n := range [][]byte{{9, 0x10}, sps, pps, idr, {9, 0x30}, p, {9, 0x30}, p} {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	c, err := parseH264Clip(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.aus) != 3 || len(c.aus[0]) != 3 || len(c.aus[1]) != 1 || c.fmtp() != "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001e" {
		t.Fatalf("clip %v, fmtp %s", c.aus, c.fmtp())
	}
	if _, err := parseH264Clip([]byte{0, 0, 1, 0x41, 1}); err == nil {
		t.Fatal("a stream without parameter sets accepted")
	}
	if i, ok := seiIndex(frameSEI(70000)); !ok || i != 70000 {
		t.Fatal("SEI round trip")
	}
	// 1 + FU-A fragments of 1186 bytes (2400-1 = 2399: 3 packets) + SPS and PPS before the IDR.
	if n := h264RTPPackets([][]byte{append([]byte{0x65}, make([]byte, 2399)...), frameSEI(1)}); n != 1+3+2 {
		t.Fatalf("%d packets", n)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	if _, err := Run(context.Background(), Options{URL: "http://192.0.2.1:8080"}); err == nil {
		t.Fatal("non-loopback URL accepted")
	}
}

func TestIVF(t *testing.T) {
	// A small IVF file of synthetic frames: 32-byte file header, then a
	// 12-byte header before each frame.
	g, err := synth.NewVP8(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 32)
	copy(hdr, "DKIF")
	binary.LittleEndian.PutUint16(hdr[6:], 32)
	copy(hdr[8:], "VP80")
	binary.LittleEndian.PutUint16(hdr[12:], 640)
	binary.LittleEndian.PutUint16(hdr[14:], 360)
	binary.LittleEndian.PutUint32(hdr[16:], 30)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint32(hdr[24:], 3)
	ivf := hdr
	for i := 0; i < 3; i++ {
		f := g.Frame(i)
		fh := make([]byte, 12)
		binary.LittleEndian.PutUint32(fh, uint32(len(f)))
		binary.LittleEndian.PutUint64(fh[4:], uint64(i))
		ivf = append(append(ivf, fh...), f...)
	}
	src, err := videoSource(ivf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(src(4)) != string(g.Frame(1)) {
		t.Fatal("the IVF frames do not loop")
	}
	if _, err := readIVF([]byte("junk")); err == nil {
		t.Fatal("junk accepted")
	}
}

// Stalled viewers (ICE-TCP through a proxy that stops reading) make the
// server drop their packets, while the healthy viewers lose nothing.
func TestRunStalled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and seven pion clients")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// 4 Mbit/s, so the stalled connections' socket buffers fill soon; the
	// window starts once the server counted a drop (waitDrops).
	res, err := Run(ctx, Options{Viewers: 6, Stalled: 34, Warmup: time.Second, Duration: 2 * time.Second,
		VideoBitrate: 4_000_000, waitDrops: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res.Table())
	h, s := res.HealthyGroup, res.StalledGroup
	if res.StalledViewers != 2 || h == nil || s == nil || h.Viewers != 4 || s.Viewers != 2 {
		t.Fatalf("groups: %+v", res)
	}
	if h.Connected != 4 || s.Connected != 2 {
		t.Fatalf("not every viewer received video: healthy %+v, stalled %+v", h, s)
	}
	if h.Expected == 0 || h.Lost != 0 {
		t.Fatalf("the healthy viewers lost packets: %+v", h)
	}
	if res.SinkDropsError != "" || res.SinkDrops == 0 || res.SinkDropsAfter <= res.SinkDropsBefore {
		t.Fatalf("no server sink drops over the window: %+v", res)
	}
	if s.ReceivedPct >= h.ReceivedPct {
		t.Fatalf("the stalled viewers received %.1f %% of the published packets, the healthy ones %.1f %%", s.ReceivedPct, h.ReceivedPct)
	}
	if !strings.Contains(res.Table(), "stalled viewers") {
		t.Fatal("table")
	}
}

func TestStalledCount(t *testing.T) {
	for _, c := range []struct{ viewers, pct, want int }{{300, 10, 30}, {6, 34, 2}, {10, 0, 0}, {3, 1, 1}, {5, 100, 5}} {
		if got := (Options{Viewers: c.viewers, Stalled: c.pct}).StalledCount(); got != c.want {
			t.Errorf("%d viewers, %d %%: %d stalled, want %d", c.viewers, c.pct, got, c.want)
		}
	}
}
