package fanout

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
)

// RTMP audio codecs (Options.RTMPAudio).
const (
	AudioOpus = "opus" // enhanced RTMP, passed through
	AudioAAC  = "aac"  // transcoded to Opus by the server's ffmpeg child
)

// Sources a run can publish with (Options.Source).
const (
	SourceWHIP = "whip" // pion: VP8 + Opus over WebRTC
	SourceRTMP = "rtmp" // gortmplib: H.264 + Opus (enhanced RTMP) or AAC
)

// The RTMP source's video: a clip of testsrc2 encoded once by ffmpeg,
// looped.
const (
	clipWidth, clipHeight = 640, 360
	clipFPS               = 30
	clipSeconds           = 10
)

// The frame-index SEI the RTMP publisher appends to every access unit:
// NAL unit type 6, the index (big-endian), three zero bytes and the RBSP
// stop bit. Parley's H.264 packetizer sends it as its own RTP packet, the
// access unit's last (with the marker), so viewers can match frames.
const seiLen = 9

// seiEvery is how often a frame carries its index: every 10th (3 a
// second), enough latency samples while adding few packets (one per
// SEI) to the stream whose forwarding cost is measured.
const seiEvery = 10

func frameSEI(i uint32) []byte {
	b := []byte{6, 0, 0, 0, 0, 0, 0, 0, 0x80}
	binary.BigEndian.PutUint32(b[1:], i)
	return b
}

// seiIndex is the frame index of a packet payload that is a frame-index
// SEI.
func seiIndex(p []byte) (uint32, bool) {
	if len(p) != seiLen || p[0]&0x1f != 6 || p[8] != 0x80 {
		return 0, false
	}
	return binary.BigEndian.Uint32(p[1:]), true
}

// h264Clip is H.264 access units (NAL units without start codes, no
// access unit delimiters) and the stream's parameter sets.
type h264Clip struct {
	aus      [][][]byte
	sps, pps []byte
}

// fmtp is the SDP format line a WebRTC receiver of the clip registers
// (Parley's ingest offers the SPS's profile-level-id).
func (c h264Clip) fmtp() string {
	return fmt.Sprintf("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=%02x%02x%02x", c.sps[1], c.sps[2], c.sps[3])
}

// encodeH264 has ffmpeg (libx264) encode clipSeconds of testsrc2 at
// bitrate bits/s: 640x360, 30 fps, tuned for latency, a keyframe every
// second, no B-frames, an access unit delimiter before each frame.
func encodeH264(ctx context.Context, bitrate int) (h264Clip, error) {
	ff, err := exec.LookPath("ffmpeg")
	if err != nil {
		return h264Clip{}, fmt.Errorf("fanout: the rtmp source encodes its H.264 with ffmpeg (libx264), which is not installed (Debian: apt install ffmpeg): %w", err)
	}
	if bitrate <= 0 {
		bitrate = 1_000_000
	}
	br := strconv.Itoa(bitrate)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ff, "-hide_banner", "-nostdin", "-loglevel", "error",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d", clipWidth, clipHeight, clipFPS),
		"-frames:v", strconv.Itoa(clipSeconds*clipFPS),
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-bf", "0",
		"-g", strconv.Itoa(clipFPS), "-keyint_min", strconv.Itoa(clipFPS), "-sc_threshold", "0",
		"-b:v", br, "-maxrate", br, "-bufsize", br, "-x264-params", "aud=1", "-f", "h264", "pipe:1")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return h264Clip{}, fmt.Errorf("fanout: ffmpeg (libx264): %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return parseH264Clip(out)
}

// parseH264Clip cuts an Annex B stream with an access unit delimiter
// before each frame into access units (without the delimiters).
func parseH264Clip(b []byte) (h264Clip, error) {
	var c h264Clip
	var au [][]byte
	flush := func() {
		if len(au) > 0 {
			c.aus = append(c.aus, au)
			au = nil
		}
	}
	for _, n := range splitAnnexB(b) {
		switch n[0] & 0x1f {
		case 9: // access unit delimiter
			flush()
			continue
		case 7:
			if c.sps == nil {
				c.sps = n
			}
		case 8:
			if c.pps == nil {
				c.pps = n
			}
		}
		au = append(au, n)
	}
	flush()
	if len(c.sps) < 4 || c.pps == nil || len(c.aus) == 0 {
		return h264Clip{}, fmt.Errorf("fanout: ffmpeg's H.264 has no SPS, PPS or frames (%d access units)", len(c.aus))
	}
	return c, nil
}

// splitAnnexB returns the NAL units between start codes (00 00 01, or
// 00 00 00 01: the zero before a start code is dropped, as a NAL unit
// never ends in a zero byte).
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	for _, part := range bytes.Split(b, []byte{0, 0, 1}) {
		if part = bytes.TrimRight(part, "\x00"); len(part) > 0 {
			out = append(out, part)
		}
	}
	return out
}

// h264RTPPackets is how many RTP packets Parley's H.264 packetizer
// (internal/ingest) makes of an access unit: one per NAL unit of at most
// 1188 bytes, FU-A fragments of 1186 bytes for larger ones, the SPS and
// PPS added before an IDR frame that lacks them. The tool has no other
// count of the packets an RTMP publish becomes (Result.PublisherPackets).
func h264RTPPackets(au [][]byte) int64 {
	const maxPayload = 1200 - 12
	var n int64
	idr, params := false, false
	for _, u := range au {
		switch u[0] & 0x1f {
		case 5:
			idr = true
		case 7, 8:
			params = true
		}
		if len(u) <= maxPayload {
			n++
		} else {
			n += int64((len(u) - 1 + maxPayload - 3) / (maxPayload - 2))
		}
	}
	if idr && !params {
		n += 2
	}
	return n
}

// rtmpAudio is the RTMP source's audio: its track, frame length and
// frames, and whether viewers can match them by payload hash (Opus passes
// through; AAC is transcoded by the server).
type rtmpAudio struct {
	track  *gortmplib.Track
	period time.Duration
	frame  func(i uint32) []byte
	write  func(w *gortmplib.Writer, t *gortmplib.Track, pts time.Duration, frame []byte) error
	hashed bool
	// packets is how many RTP packets the server makes when frame i
	// arrives (Result.PublisherPackets).
	packets func(i uint32) int64
}

// opusAudio is the WHIP publisher's counter-carrying 20 ms Opus frames
// as an enhanced-RTMP Opus track.
func opusAudio() rtmpAudio {
	return rtmpAudio{
		track:   &gortmplib.Track{Codec: &codecs.Opus{IDHeader: &opus.IDHeader{Version: 1, ChannelCount: 2, InputSampleRate: 48000}}},
		period:  20 * time.Millisecond,
		frame:   opusFrame,
		write:   (*gortmplib.Writer).WriteOpus,
		hashed:  true,
		packets: func(uint32) int64 { return 1 },
	}
}

// aacAudio has ffmpeg encode clipSeconds of a 440 Hz tone as AAC-LC
// (48 kHz, stereo, 128 kbit/s) and loops its 1024-sample frames.
func aacAudio(ctx context.Context) (rtmpAudio, error) {
	ff, err := exec.LookPath("ffmpeg")
	if err != nil {
		return rtmpAudio{}, fmt.Errorf("fanout: AAC over RTMP is encoded with ffmpeg, which is not installed (Debian: apt install ffmpeg): %w", err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ff, "-hide_banner", "-nostdin", "-loglevel", "error",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", strconv.Itoa(clipSeconds),
		"-ac", "2", "-c:a", "aac", "-b:a", "128k", "-f", "adts", "pipe:1")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return rtmpAudio{}, fmt.Errorf("fanout: ffmpeg (aac): %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(out); err != nil || len(pkts) == 0 {
		return rtmpAudio{}, fmt.Errorf("fanout: ffmpeg's ADTS (%d packets): %v", len(pkts), err)
	}
	f := pkts[0]
	if f.SampleRate <= 0 {
		return rtmpAudio{}, fmt.Errorf("fanout: ffmpeg's ADTS: sample rate %d", f.SampleRate)
	}
	// The transcoder's 20 ms Opus packets that end by frame i's end.
	opusPackets := func(i uint32) int64 { return int64(i) * 1024 * 50 / int64(f.SampleRate) }
	cfg := &mpeg4audio.AudioSpecificConfig{Type: f.Type, SampleRate: f.SampleRate, ChannelConfig: f.ChannelConfig, ChannelCount: int(f.ChannelConfig)}
	return rtmpAudio{
		track:   &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: cfg}},
		period:  time.Second * 1024 / time.Duration(f.SampleRate),
		frame:   func(i uint32) []byte { return pkts[int(i)%len(pkts)].AU },
		write:   (*gortmplib.Writer).WriteMPEG4Audio,
		packets: func(i uint32) int64 { return opusPackets(i+1) - opusPackets(i) },
	}, nil
}

// startRTMPPublisher publishes to base/live/stream (base:
// rtmp://host:port) with gortmplib: the clip's H.264 (without audio-only)
// and audio. Each access unit carries its index in a trailing SEI
// (frameSEI); the video ring is keyed by that index, the audio ring (for
// audio viewers can match) by the frame counter.
func startRTMPPublisher(ctx context.Context, base, stream string, clip h264Clip, audio rtmpAudio, epoch time.Time, audioOnly bool) (*publisher, error) {
	u, err := url.Parse(base + "/live/" + stream)
	if err != nil {
		return nil, fmt.Errorf("fanout: rtmp url: %w", err)
	}
	c := &gortmplib.Client{URL: u, Publish: true}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Initialize(cctx); err != nil {
		return nil, fmt.Errorf("fanout: rtmp publish to %s: %w", u, err)
	}
	tracks := []*gortmplib.Track{audio.track}
	var video *gortmplib.Track
	if !audioOnly {
		video = &gortmplib.Track{Codec: &codecs.H264{SPS: clip.sps, PPS: clip.pps}}
		tracks = append([]*gortmplib.Track{video}, tracks...)
	}
	w := &gortmplib.Writer{Conn: c, Tracks: tracks}
	if err := w.Initialize(); err != nil {
		c.Close()
		return nil, fmt.Errorf("fanout: rtmp tracks: %w", err)
	}
	p := &publisher{rings: [2]*stampRing{{seed: maphash.MakeSeed()}}, epoch: epoch}
	if audio.hashed {
		p.rings[1] = &stampRing{seed: maphash.MakeSeed()}
	}
	ctx, p.cancel = context.WithCancel(ctx)
	var once sync.Once
	p.closeConn = func() { once.Do(c.Close) }
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.sendRTMP(ctx, w, video, audio, clip); err != nil && ctx.Err() == nil {
			p.setErr(err)
		}
	}()
	return p, nil
}

// sendRTMP writes video frames at 30 fps and audio frames on one
// connection (a Writer is not safe for concurrent use), on a schedule
// fixed from the start: a late write is followed by the ones it delayed.
func (p *publisher) sendRTMP(ctx context.Context, w *gortmplib.Writer, video *gortmplib.Track, audio rtmpAudio, clip h264Clip) error {
	const vPeriod = time.Second / clipFPS
	start := time.Now()
	tm := time.NewTimer(0)
	defer tm.Stop()
	var vi, ai uint32
	for {
		vAt, aAt := start.Add(time.Duration(vi)*vPeriod), start.Add(time.Duration(ai)*audio.period)
		if video != nil && !vAt.After(aAt) {
			au := clip.aus[int(vi)%len(clip.aus)]
			if vi%seiEvery == 0 {
				au = append(slices.Clip(au), frameSEI(vi))
				p.rings[0].put(uint16(vi), maphash.Bytes(p.rings[0].seed, au[len(au)-1]), p.now())
			}
			pts := time.Duration(vi) * vPeriod
			if err := w.WriteH264(video, pts, pts, au); err != nil {
				return fmt.Errorf("fanout: rtmp video: %w", err)
			}
			p.sent.Add(h264RTPPackets(au))
			vi++
		} else {
			frame := audio.frame(ai)
			if r := p.rings[1]; r != nil {
				r.put(uint16(ai), maphash.Bytes(r.seed, frame), p.now())
			}
			if err := audio.write(w, audio.track, time.Duration(ai)*audio.period, frame); err != nil {
				return fmt.Errorf("fanout: rtmp audio: %w", err)
			}
			p.sent.Add(audio.packets(ai))
			ai++
		}
		next := start.Add(time.Duration(ai) * audio.period)
		if v := start.Add(time.Duration(vi) * vPeriod); video != nil && v.Before(next) {
			next = v
		}
		tm.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return nil
		case <-tm.C:
		}
	}
}

// errNoRTMP is the error of an rtmp run without an RTMP address.
var errNoRTMP = errors.New("fanout: the rtmp source needs the server's RTMP listener (Options.RTMPURL, --rtmp-url: e.g. rtmp://127.0.0.1:1935)")
