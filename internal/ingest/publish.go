// Package ingest is what every non-WebRTC source has in common: RTMP, RTSP
// (pushed and pulled) and SRT publishers turn their media into access
// units and frames, and a Publisher here makes them the SFU tracks that
// WHEP and /w/<stream> watch: H.264 repacketized as RTP
// (packetization-mode=1), AAC transcoded to Opus by an ffmpeg child, Opus
// and G.711 framed as RTP, other RTP codecs passed through. It also holds
// the Request and Authorizer types every listener checks access with.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/transcode"
)

// Claim holds a stream name for one publisher (WHIP's ClaimStream gives
// one, so WHIP and every ingest share the names).
type Claim interface {
	// Published is told each track the publisher published.
	Published(ti sfu.TrackInfo)
	// Release frees the name.
	Release()
}

// Claimer takes a stream name for a publisher announcing this many
// tracks; it fails while the stream has a live publisher.
type Claimer func(stream string, tracks int) (Claim, error)

// Config describes one live publish.
type Config struct {
	SFU    *sfu.SFU
	Stream string
	// SourceID names the publisher in the stream's room, e.g. "rtmp-door".
	SourceID string
	// Claim is told the tracks once Ready is called; nil for none.
	Claim Claim
	// FFmpeg is the ffmpeg binary for AAC; "" looks it up on PATH.
	FFmpeg string
	// Proto names the protocol for status ("rtmp", "rtsp", "srt", "camera").
	Proto string
	// Registry, when set, lists the publisher while it is live.
	Registry *Registry
	// SharedClock says the pts given to every track's writes count from
	// one origin (RTMP's and SRT's demuxers): the tracks are published
	// with sfu.TrackSpec.SharedClock, so sinks line them up exactly.
	// Passthrough tracks keep their source's RTP clock and never share.
	SharedClock bool
	Logger      *slog.Logger
}

// Payload types and SSRCs of ingested tracks.
const (
	PTH264 = 102
	PTVP9  = 98
	PTAV1  = 45
	PTH265 = 116
	PTOpus = 111
	PTPCMU = 0
	PTPCMA = 8

	ssrcVideo = 1
	ssrcAudio = 2
)

// Publisher is one live source of a stream: its SFU tracks and its
// transcoder. Track constructors and Ready are called by the setup
// goroutine; each track's Write methods by one goroutine at a time.
type Publisher struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	pubs  []*sfu.Publication
	tr    *transcode.AACToOpus
	kinds []string
	notes []string
	since time.Time
	video bool
	audio bool
}

// NewPublisher starts a publish; nothing is visible until a track is added.
func NewPublisher(cfg Config) (*Publisher, error) {
	if cfg.SFU == nil || cfg.Stream == "" {
		return nil, errors.New("ingest: Config.SFU and Config.Stream are required")
	}
	if cfg.SourceID == "" {
		cfg.SourceID = "ingest-" + cfg.Stream
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{cfg: cfg, log: log, since: time.Now()}
	cfg.Registry.add(p)
	return p, nil
}

// Note records a problem viewers should be told about (e.g. video no
// browser can decode), once; it is logged and shown in the stream's status.
func (p *Publisher) Note(note string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Contains(p.notes, note) {
		return
	}
	p.notes = append(p.notes, note)
	p.log.Warn(note)
}

// Info describes the live publisher for the stream's status.
func (p *Publisher) Info() SourceInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	si := SourceInfo{Proto: p.cfg.Proto, Since: p.since, Tracks: slices.Clone(p.kinds), Notes: slices.Clone(p.notes)}
	if p.tr != nil {
		si.AudioError = p.tr.Status().Err
	}
	return si
}

// source is the SFU's view of an ingested publisher: its keyframes come
// every GOP on their own; none of these protocols can ask for one.
type source struct{ id string }

func (s source) SourceID() string     { return s.id }
func (source) RequestKeyframe(uint32) {}

func (p *Publisher) publish(spec sfu.TrackSpec, kind string) (*sfu.Publication, error) {
	return p.publishTrack(spec, kind, p.cfg.SharedClock)
}

// publishTrack publishes a track, on the publisher's shared clock or not.
func (p *Publisher) publishTrack(spec sfu.TrackSpec, kind string, shared bool) (*sfu.Publication, error) {
	spec.StreamID, spec.SharedClock = p.cfg.Stream, shared
	if len(spec.Layers) == 0 {
		ssrc := uint32(ssrcVideo)
		if strings.HasPrefix(strings.ToLower(spec.Codec.MimeType), "audio/") {
			ssrc = ssrcAudio
		}
		spec.Layers = []sfu.LayerSpec{{SSRC: ssrc}}
	}
	pub, err := p.cfg.SFU.Publish(sfu.Streams, p.cfg.Stream, source{id: p.cfg.SourceID}, spec)
	if err != nil {
		return nil, fmt.Errorf("publishing %s: %w", spec.Codec.MimeType, err)
	}
	p.mu.Lock()
	p.pubs = append(p.pubs, pub)
	p.kinds = append(p.kinds, kind)
	p.mu.Unlock()
	return pub, nil
}

// HasVideo and HasAudio tell whether a track of the kind was added (a
// source offering two keeps the first).
func (p *Publisher) HasVideo() bool { return p.video }
func (p *Publisher) HasAudio() bool { return p.audio }

// H264 adds the video track, fed with access units.
func (p *Publisher) H264(sps, pps []byte) (*H264, error) {
	if p.video {
		return nil, errors.New("ingest: a second video track")
	}
	fmtp := "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
	if len(sps) >= 4 {
		fmtp = fmt.Sprintf("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=%02x%02x%02x", sps[1], sps[2], sps[3])
	}
	pub, err := p.publish(sfu.TrackSpec{TrackID: "video", Codec: webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtp},
		PayloadType:        PTH264,
	}}, "H.264")
	if err != nil {
		return nil, err
	}
	p.video = true
	h := &H264{h: h264{rtpWriter: rtpWriter{pt: PTH264, ssrc: ssrcVideo}}}
	h.h.write = func(pkt []byte) error { return pub.WriteRTP("", pkt) }
	h.h.setParams(sps, pps)
	return h, nil
}

// H264 is an H.264 track fed with access units.
type H264 struct{ h h264 }

// SetParams takes a new SPS and PPS (either may be nil to keep the old).
func (h *H264) SetParams(sps, pps []byte) { h.h.setParams(sps, pps) }

// WriteAU sends one access unit (NAL units without start codes) with its
// presentation time. An access unit of only an SPS and a PPS updates them.
func (h *H264) WriteAU(au [][]byte, pts time.Duration) error {
	if len(au) == 2 && len(au[0]) > 0 && len(au[1]) > 0 && au[0][0]&0x1f == naluSPS && au[1][0]&0x1f == naluPPS {
		h.h.setParams(au[0], au[1])
		return nil
	}
	return h.h.writeAU(au, pts)
}

// Framed is a video track fed with whole frames that a pion payloader
// cuts into RTP packets (VP9, AV1).
type Framed struct {
	w  rtpWriter
	pl rtp.Payloader
}

// WriteFrame sends one frame (a VP9 frame, or an AV1 temporal unit in the
// low-overhead bitstream format) with its presentation time.
func (f *Framed) WriteFrame(frame []byte, pts time.Duration) error {
	ps := f.pl.Payload(maxRTPPayload, frame)
	ts := ticks(pts, 90000)
	for i, pl := range ps {
		if err := f.w.payload(i == len(ps)-1, ts, pl); err != nil {
			return err
		}
	}
	return nil
}

func (p *Publisher) framed(mime, fmtp string, pt uint8, kind string, pl rtp.Payloader) (*Framed, error) {
	if p.video {
		return nil, errors.New("ingest: a second video track")
	}
	pub, err := p.publish(sfu.TrackSpec{TrackID: "video", Codec: webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp},
		PayloadType:        webrtc.PayloadType(pt),
	}}, kind)
	if err != nil {
		return nil, err
	}
	p.video = true
	f := &Framed{w: rtpWriter{pt: pt, ssrc: ssrcVideo}, pl: pl}
	f.w.write = func(pkt []byte) error { return pub.WriteRTP("", pkt) }
	return f, nil
}

// VP9 adds a VP9 (profile 0) video track fed with frames.
func (p *Publisher) VP9() (*Framed, error) {
	return p.framed(webrtc.MimeTypeVP9, "profile-id=0", PTVP9, "VP9", &codecs.VP9Payloader{})
}

// AV1 adds an AV1 video track fed with temporal units.
func (p *Publisher) AV1() (*Framed, error) {
	return p.framed(webrtc.MimeTypeAV1, "", PTAV1, "AV1", &codecs.AV1Payloader{})
}

// H265 adds an H.265 video track fed with access units. Only viewers
// that offer H.265 get it (few browsers do), so the publisher is told to
// say so (Note).
func (p *Publisher) H265(vps, sps, pps []byte) (*H265, error) {
	if p.video {
		return nil, errors.New("ingest: a second video track")
	}
	pub, err := p.publish(sfu.TrackSpec{TrackID: "video", Codec: webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000},
		PayloadType:        PTH265,
	}}, "H.265")
	if err != nil {
		return nil, err
	}
	p.video = true
	h := &H265{h: h265{rtpWriter: rtpWriter{pt: PTH265, ssrc: ssrcVideo}}}
	h.h.write = func(pkt []byte) error { return pub.WriteRTP("", pkt) }
	h.h.setParams(vps, sps, pps)
	p.Note("the video is H.265: only viewers whose browser decodes H.265 see it (most show no picture); publish H.264 for everyone")
	return h, nil
}

// H265 is an H.265 track fed with access units.
type H265 struct{ h h265 }

// WriteAU sends one access unit (NAL units without start codes) with its
// presentation time; VPS, SPS and PPS in it are kept for later IRAPs.
func (h *H265) WriteAU(au [][]byte, pts time.Duration) error {
	var vps, sps, pps []byte
	for _, n := range au {
		if len(n) > 1 {
			switch n[0] >> 1 & 0x3f {
			case h265VPS:
				vps = n
			case h265SPS:
				sps = n
			case h265PPS:
				pps = n
			}
		}
	}
	if vps != nil || sps != nil || pps != nil {
		h.h.setParams(vps, sps, pps)
	}
	return h.h.writeAU(au, pts)
}

// opusSpec is the track an ingested (or transcoded) Opus stream gets.
func opusSpec() sfu.TrackSpec {
	return sfu.TrackSpec{TrackID: "audio", Codec: webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        PTOpus,
	}}
}

// Audio is an audio track fed with packets (Opus or G.711 frames).
type Audio struct {
	w     rtpWriter
	clock time.Duration // ticks per second
}

// WriteFrame sends one audio frame with its presentation time.
func (a *Audio) WriteFrame(frame []byte, pts time.Duration) error {
	if len(frame) > maxRTPPayload {
		return fmt.Errorf("ingest: %d-byte audio frame", len(frame))
	}
	return a.w.payload(true, ticks(pts, int64(a.clock)), frame)
}

func (p *Publisher) audioTrack(spec sfu.TrackSpec, kind string, clock int) (*Audio, error) {
	if p.audio {
		return nil, errors.New("ingest: a second audio track")
	}
	pub, err := p.publish(spec, kind)
	if err != nil {
		return nil, err
	}
	p.audio = true
	a := &Audio{w: rtpWriter{pt: uint8(spec.Codec.PayloadType), ssrc: ssrcAudio}, clock: time.Duration(clock)}
	a.w.write = func(pkt []byte) error { return pub.WriteRTP("", pkt) }
	return a, nil
}

// Opus adds an Opus audio track that passes through.
func (p *Publisher) Opus() (*Audio, error) { return p.audioTrack(opusSpec(), "Opus", 48000) }

// G711 adds a G.711 track (mu-law, or A-law when alaw) that passes
// through: WebRTC viewers decode it as PCMU/PCMA at 8 kHz mono.
func (p *Publisher) G711(alaw bool) (*Audio, error) {
	mime, pt, kind := webrtc.MimeTypePCMU, PTPCMU, "G.711 µ-law"
	if alaw {
		mime, pt, kind = webrtc.MimeTypePCMA, PTPCMA, "G.711 A-law"
	}
	return p.audioTrack(sfu.TrackSpec{TrackID: "audio", Codec: webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 8000, Channels: 1},
		PayloadType:        webrtc.PayloadType(pt),
	}}, kind, 8000)
}

// AAC is an AAC track transcoded to Opus.
type AAC struct {
	tr *transcode.AACToOpus
	// base is the first access unit's pts in 48 kHz ticks + 1 (0: none
	// yet): the transcoder counts its output from 0, the track's RTP
	// timestamps from the source's origin.
	base atomic.Uint64
}

// Write hands one AAC access unit and its pts to the transcoder; it
// never blocks.
func (a *AAC) Write(au []byte, pts time.Duration) {
	a.base.CompareAndSwap(0, uint64(ticks(pts, 48000))+1)
	a.tr.Write(au)
}

// AAC adds an Opus track fed by transcoding AAC-LC with this sample rate
// and channel count. Without ffmpeg the track is there but silent, and
// AudioErr says why.
func (p *Publisher) AAC(ctx context.Context, sampleRate, channels int) (*AAC, error) {
	a, err := p.audioTrack(opusSpec(), "AAC→Opus", 48000)
	if err != nil {
		return nil, err
	}
	out := &AAC{}
	tr, err := transcode.Start(ctx, transcode.Config{SampleRate: sampleRate, Channels: channels,
		FFmpeg: p.cfg.FFmpeg, Logger: p.log,
		OnPacket: func(pkt []byte, ts uint32) {
			if len(pkt) <= maxRTPPayload {
				_ = a.w.payload(true, ts+uint32(max(out.base.Load(), 1)-1), pkt)
			}
		}})
	if err != nil {
		return nil, fmt.Errorf("AAC: %w", err)
	}
	p.mu.Lock()
	p.tr = tr
	p.mu.Unlock()
	if st := tr.Status(); st.Err != "" {
		p.log.Error("this stream has no sound", "err", st.Err)
	}
	out.tr = tr
	return out, nil
}

// RTP is a track whose source already speaks RTP in a codec WebRTC
// viewers take as it is (VP8, VP9, AV1, H.264 packetization-mode=1).
type RTP struct {
	pub  *sfu.Publication
	pt   uint8
	ssrc uint32
	buf  []byte
}

// Passthrough adds such a track with this codec.
func (p *Publisher) Passthrough(codec webrtc.RTPCodecParameters) (*RTP, error) {
	spec := sfu.TrackSpec{TrackID: "video", Codec: codec}
	isAudio := strings.HasPrefix(strings.ToLower(codec.MimeType), "audio/")
	if isAudio {
		if p.audio {
			return nil, errors.New("ingest: a second audio track")
		}
		spec.TrackID = "audio"
	} else if p.video {
		return nil, errors.New("ingest: a second video track")
	}
	pub, err := p.publishTrack(spec, codec.MimeType, false) // the source's own RTP clock
	if err != nil {
		return nil, err
	}
	ssrc := uint32(ssrcVideo)
	if isAudio {
		ssrc, p.audio = ssrcAudio, true
	} else {
		p.video = true
	}
	return &RTP{pub: pub, pt: uint8(codec.PayloadType), ssrc: ssrc, buf: make([]byte, 0, 1500)}, nil
}

// WritePacket sends the packet with the track's payload type and SSRC
// (the packet is modified).
func (r *RTP) WritePacket(pkt *rtp.Packet) error {
	pkt.PayloadType, pkt.SSRC = r.pt, r.ssrc
	pkt.Extension, pkt.Extensions, pkt.Padding, pkt.PaddingSize = false, nil, false, 0
	b, err := pkt.Header.MarshalTo(r.buf[:cap(r.buf)])
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if b+len(pkt.Payload) > cap(r.buf) {
		return fmt.Errorf("ingest: %d-byte RTP packet", b+len(pkt.Payload))
	}
	n := copy(r.buf[b:cap(r.buf)], pkt.Payload)
	return r.pub.WriteRTP("", r.buf[:b+n])
}

// Ready tells the claim of every track: WHEP viewers waiting for the
// stream attach to them. Call it once, after the tracks are added.
func (p *Publisher) Ready() {
	if p.cfg.Claim == nil {
		return
	}
	p.mu.Lock()
	pubs := append([]*sfu.Publication(nil), p.pubs...)
	p.mu.Unlock()
	for _, pub := range pubs {
		p.cfg.Claim.Published(pub.Info())
	}
}

// Describe lists the tracks, e.g. "H.264, AAC→Opus".
func (p *Publisher) Describe() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.kinds, ", ")
}

// Tracks is how many tracks were added.
func (p *Publisher) Tracks() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pubs)
}

// AudioErr is why the stream has no sound ("" when it has, or has no
// audio track): the transcoder's last error, e.g. ffmpeg not found.
func (p *Publisher) AudioErr() string {
	p.mu.Lock()
	tr := p.tr
	p.mu.Unlock()
	if tr == nil {
		return ""
	}
	return tr.Status().Err
}

// Close ends the transcoder and the tracks (their viewers wait for the
// next publisher, as WHIP's do). It does not release the claim.
func (p *Publisher) Close() {
	p.cfg.Registry.remove(p)
	p.mu.Lock()
	tr, pubs := p.tr, p.pubs
	p.tr, p.pubs = nil, nil
	p.mu.Unlock()
	if tr != nil {
		tr.Close()
	}
	for _, pub := range pubs {
		pub.End()
	}
}
