package rtsp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/ingest"
)

// Payload types of passed-through video (pion's defaults).
const (
	ptVP8 = 96
	ptVP9 = 98
	ptAV1 = 45
)

// usable tells whether a pushed format becomes a track, and of which kind.
func usable(f format.Format) (kind string, ok bool) {
	switch f := f.(type) {
	case *format.H264, *format.H265, *format.VP8, *format.VP9, *format.AV1:
		return "video", true
	case *format.MPEG4Audio:
		return "audio", f.Config != nil
	case *format.Opus:
		return "audio", true
	case *format.G711:
		return "audio", f.SampleRate == 8000 && f.ChannelCount == 1
	}
	return "", false
}

// plan picks the formats a push publishes: the first usable video and
// the first usable audio.
func plan(medias []*description.Media) (out []mediaFormat, ignored []string) {
	var video, audio bool
	for _, m := range medias {
		for _, f := range m.Formats {
			kind, ok := usable(f)
			switch {
			case !ok:
				ignored = append(ignored, f.Codec())
				continue
			case kind == "video" && !video:
				video = true
			case kind == "audio" && !audio:
				audio = true
			default:
				ignored = append(ignored, f.Codec()+" (a second "+kind+" track)")
				continue
			}
			out = append(out, mediaFormat{m, f})
			break
		}
	}
	return out, ignored
}

type mediaFormat struct {
	m *description.Media
	f format.Format
}

const supported = "H.264, H.265, VP8, VP9 or AV1 video; AAC, Opus or G.711 (8 kHz mono) audio"

// OnAnnounce admits a publisher: its token, its codecs, then the stream
// name (busy while another publisher holds it).
func (s *Server) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	if s.sessionCount() >= s.cfg.MaxSessions {
		return s.reject("publish", ctx.Conn, ctx.Path, refuse(base.StatusServiceUnavailable, "too many sessions"))
	}
	stream, end, r := s.access(ctx.Conn, ctx.Request, ctx.Path, ctx.Query, ingest.Publish)
	if r != nil {
		return s.reject("publish", ctx.Conn, ctx.Path, r)
	}
	tracks, ignored := plan(ctx.Description.Medias)
	if len(tracks) == 0 {
		end()
		return s.reject("publish", ctx.Conn, ctx.Path, refuse(base.StatusUnsupportedMediaType,
			fmt.Sprintf("no supported track in %s; send %s", strings.Join(ignored, ", "), supported)))
	}
	c, err := s.cfg.Claim(stream, len(tracks))
	if err != nil {
		end()
		return s.reject("publish", ctx.Conn, ctx.Path, refuse(base.StatusServiceUnavailable, err.Error()))
	}
	if len(ignored) > 0 {
		s.log.Warn("RTSP tracks not supported; ignoring them", "stream", stream, "codecs", ignored)
	}
	s.mu.Lock()
	s.sessions[ctx.Session] = &session{stream: stream, conn: ctx.Conn, end: end, claim: c}
	s.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnRecord makes the SFU tracks of the set-up medias and feeds them.
func (s *Server) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	s.mu.Lock()
	se := s.sessions[ctx.Session]
	s.mu.Unlock()
	if se == nil || se.claim == nil || se.pub != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, errors.New("RECORD without ANNOUNCE")
	}
	log := s.log.With("stream", se.stream, "remote", ctx.Conn.NetConn().RemoteAddr())
	p, err := ingest.NewPublisher(ingest.Config{SFU: s.cfg.SFU, Stream: se.stream, SourceID: "rtsp-" + se.stream,
		Claim: se.claim, FFmpeg: s.cfg.FFmpeg, Logger: log, Proto: "rtsp", Registry: s.cfg.Registry})
	if err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, err
	}
	tctx, cancel := context.WithCancel(s.ctx)
	s.mu.Lock()
	se.pub, se.cancel = p, cancel
	s.mu.Unlock()
	s.npub.Add(1) // OnSessionClose counts it down
	tracks, _ := plan(ctx.Session.Medias())
	for _, t := range tracks {
		if err := feed(tctx, p, ctx.Session, t, log); err != nil {
			r := refuse(base.StatusUnsupportedMediaType, err.Error())
			return s.reject("publish", ctx.Conn, ctx.Path, r)
		}
	}
	if p.Tracks() == 0 {
		return s.reject("publish", ctx.Conn, ctx.Path, refuse(base.StatusUnsupportedMediaType, "no supported track set up; send "+supported))
	}
	p.Ready()
	log.Info("RTSP publisher live", "tracks", p.Describe(), "transport", ctx.Session.Transport().Protocol.String())
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// dur turns a PTS in clock ticks into the duration ingest turns back
// into an RTP timestamp. It wraps as RTP timestamps do (modulo 2^32
// ticks): ticks × 10^9 would overflow after 28 hours at 90 kHz.
func dur(pts int64, clock int64) time.Duration {
	return time.Duration(uint32(pts)) * time.Second / time.Duration(clock)
}

// accessUnits is a packet callback that hands each complete access unit
// (decoded from RTP by decode) to write with its PTS; packets before the
// stream has a PTS, and incomplete or broken units, are skipped.
func accessUnits(pts func(*rtp.Packet) (int64, bool), decode func(*rtp.Packet) ([][]byte, error), write func([][]byte, int64)) func(*rtp.Packet) {
	return func(pkt *rtp.Packet) {
		ts, ok := pts(pkt)
		if !ok {
			return
		}
		au, err := decode(pkt)
		if err != nil {
			return // more packets needed, or a lost fragment
		}
		write(au, ts)
	}
}

// feed adds the track for one pushed format and installs the callback
// that feeds it (run by the library's reader of this session).
func feed(ctx context.Context, p *ingest.Publisher, ss *gortsplib.ServerSession, t mediaFormat, log *slog.Logger) error {
	pts := func(pkt *rtp.Packet) (int64, bool) { return ss.PacketPTS(t.m, pkt) }
	drop := func(err error) {
		if err != nil {
			log.Debug("dropping media", "codec", t.f.Codec(), "err", err)
		}
	}
	switch f := t.f.(type) {
	case *format.H264:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("H.264: %w", err)
		}
		h, err := p.H264(f.SafeParams())
		if err != nil {
			return err
		}
		ss.OnPacketRTP(t.m, f, accessUnits(pts, dec.Decode, func(au [][]byte, ts int64) { drop(h.WriteAU(au, dur(ts, 90000))) }))
	case *format.H265:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("H.265: %w", err)
		}
		h, err := p.H265(f.SafeParams())
		if err != nil {
			return err
		}
		ss.OnPacketRTP(t.m, f, accessUnits(pts, dec.Decode, func(au [][]byte, ts int64) { drop(h.WriteAU(au, dur(ts, 90000))) }))
	case *format.MPEG4Audio:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("AAC: %w", err)
		}
		a, err := p.AAC(ctx, f.Config.SampleRate, f.Config.ChannelCount)
		if err != nil {
			return err
		}
		ss.OnPacketRTP(t.m, f, func(pkt *rtp.Packet) {
			aus, err := dec.Decode(pkt)
			if err != nil {
				return
			}
			for _, au := range aus {
				a.Write(au, 0) // not on a shared clock: the origin does not matter
			}
		})
	case *format.Opus:
		a, err := p.Opus()
		if err != nil {
			return err
		}
		ss.OnPacketRTP(t.m, f, func(pkt *rtp.Packet) {
			if ts, ok := pts(pkt); ok {
				drop(a.WriteFrame(pkt.Payload, dur(ts, 48000)))
			}
		})
	case *format.G711:
		a, err := p.G711(!f.MULaw)
		if err != nil {
			return err
		}
		ss.OnPacketRTP(t.m, f, func(pkt *rtp.Packet) {
			if ts, ok := pts(pkt); ok {
				drop(a.WriteFrame(pkt.Payload, dur(ts, 8000)))
			}
		})
	case *format.VP8, *format.VP9, *format.AV1:
		r, err := p.Passthrough(passthroughCodec(f))
		if err != nil {
			return err
		}
		ss.OnPacketRTP(t.m, f, func(pkt *rtp.Packet) { drop(r.WritePacket(pkt)) })
	}
	return nil
}

// passthroughCodec is the WebRTC codec a VP8, VP9 or AV1 push becomes.
func passthroughCodec(f format.Format) webrtc.RTPCodecParameters {
	switch f.(type) {
	case *format.VP9:
		return webrtc.RTPCodecParameters{PayloadType: ptVP9,
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}}
	case *format.AV1:
		return webrtc.RTPCodecParameters{PayloadType: ptAV1,
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000}}
	}
	return webrtc.RTPCodecParameters{PayloadType: ptVP8,
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}
}
