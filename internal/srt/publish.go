package srt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/transcode"
)

// tsTracks are the tracks of a publisher's MPEG-TS that become SFU tracks:
// the first H.264 or H.265 and the first AAC or Opus. Ignored lists the
// others.
type tsTracks struct {
	video, audio *mpegts.Track
	ignored      []string
}

// pickTracks chooses the tracks to publish.
func pickTracks(tracks []*mpegts.Track) tsTracks {
	var t tsTracks
	for _, tr := range tracks {
		switch c := tr.Codec.(type) {
		case *mpegts.CodecH264, *mpegts.CodecH265:
			if t.video == nil {
				t.video = tr
				continue
			}
		case *mpegts.CodecMPEG4Audio:
			if t.audio == nil && c.SampleRate > 0 {
				t.audio = tr
				continue
			}
		case *mpegts.CodecOpus:
			if t.audio == nil {
				t.audio = tr
				continue
			}
		}
		t.ignored = append(t.ignored, codecName(tr.Codec))
	}
	return t
}

// codecName names an MPEG-TS codec for logs and refusals.
func codecName(c mpegts.Codec) string {
	switch c.(type) {
	case *mpegts.CodecH264:
		return "H.264"
	case *mpegts.CodecH265:
		return "H.265"
	case *mpegts.CodecMPEG4Audio:
		return "AAC"
	case *mpegts.CodecOpus:
		return "Opus"
	case *mpegts.CodecMPEG1Audio:
		return "MPEG-1 audio (MP2/MP3)"
	case *mpegts.CodecAC3:
		return "AC-3"
	}
	return fmt.Sprintf("%T", c)
}

// tsSinks receive the chosen tracks' media; nil ones are not wanted.
type tsSinks struct {
	h264 func(au [][]byte, pts time.Duration) // H.264 or H.265 access units
	aac  func(au []byte, pts time.Duration)
	opus func(pkt []byte, pts time.Duration)
	// decodeError is told each stream error the demuxer skips.
	decodeError func(err error)
}

// openTS reads until the MPEG-TS program tables and returns the reader.
func openTS(r io.Reader) (*mpegts.Reader, error) {
	rd := &mpegts.Reader{R: r}
	if err := rd.Initialize(); err != nil {
		return nil, fmt.Errorf("reading MPEG-TS tables: %w", err)
	}
	return rd, nil
}

// demux feeds the tracks' media to the sinks until r fails (io.EOF when
// it simply ends). Timestamps (33-bit, 90 kHz) are unwrapped on one clock
// for all tracks.
func demux(rd *mpegts.Reader, t tsTracks, out tsSinks) error {
	var td mpegts.TimeDecoder
	pts := func(v int64) time.Duration { return ticks90k(td.Decode(v)) }
	if out.decodeError != nil {
		rd.OnDecodeError(out.decodeError)
	}
	if t.video != nil && out.h264 != nil {
		if _, hevc := t.video.Codec.(*mpegts.CodecH265); hevc {
			rd.OnDataH265(t.video, func(p, _ int64, au [][]byte) error {
				out.h264(au, pts(p))
				return nil
			})
		} else {
			rd.OnDataH264(t.video, func(p, _ int64, au [][]byte) error {
				out.h264(au, pts(p))
				return nil
			})
		}
	}
	if t.audio != nil {
		switch c := t.audio.Codec.(type) {
		case *mpegts.CodecMPEG4Audio:
			if out.aac != nil {
				rate := time.Duration(max(c.SampleRate, 1)) //nolint:staticcheck // the ADTS sample rate
				rd.OnDataMPEG4Audio(t.audio, func(p int64, aus [][]byte) error {
					at := pts(p)
					for i, au := range aus {
						out.aac(au, at+time.Duration(i)*1024*time.Second/rate)
					}
					return nil
				})
			}
		case *mpegts.CodecOpus:
			if out.opus != nil {
				rd.OnDataOpus(t.audio, func(p int64, pkts [][]byte) error {
					at := pts(p)
					for _, pkt := range pkts {
						out.opus(pkt, at)
						at += time.Duration(opus.PacketDuration2(pkt)) * time.Second / 48000
					}
					return nil
				})
			}
		}
	}
	for {
		if err := rd.Read(); err != nil {
			return err
		}
	}
}

// ticks90k turns 90 kHz ticks into a duration without overflowing.
func ticks90k(v int64) time.Duration {
	return time.Duration(v/90000)*time.Second + time.Duration(v%90000)*time.Second/90000
}

// watchdog wraps a connection's reads: until live it allows at most
// setupLeft bytes (the timer, armed with the handshake timeout, closes
// the connection); once live each read re-arms the timer with the idle
// timeout.
type watchdog struct {
	r         io.Reader
	timer     *time.Timer
	setupLeft int
	idle      atomic.Int64 // the idle timeout once live, 0 before
	fired     atomic.Bool
}

var errSetupTooLarge = fmt.Errorf("no MPEG-TS tables in the first %d bytes", maxSetupBytes)

func newWatchdog(conn io.ReadCloser, setup time.Duration) *watchdog {
	w := &watchdog{r: conn, setupLeft: maxSetupBytes}
	w.timer = time.AfterFunc(setup, func() {
		w.fired.Store(true)
		_ = conn.Close()
	})
	return w
}

func (w *watchdog) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if idle := time.Duration(w.idle.Load()); idle > 0 {
		if n > 0 {
			w.timer.Reset(idle)
		}
	} else if w.setupLeft -= n; w.setupLeft < 0 {
		return n, errSetupTooLarge
	}
	if err != nil && w.fired.Load() {
		// Not wrapping io.EOF: the demuxer takes only a bare io.EOF as the
		// end, and skips (forever) an error that merely wraps it.
		return n, errTimedOut
	}
	return n, err
}

var errTimedOut = errors.New("timed out: no MPEG-TS tables or data in time")

// live switches from the setup deadline to the idle timeout.
func (w *watchdog) live(idle time.Duration) {
	w.idle.Store(int64(idle))
	w.timer.Reset(idle)
}

func (w *watchdog) stop() { w.timer.Stop() }

// publish runs a publisher: claim, accept, tracks, media until it stops.
func (s *Server) publish(req gosrt.ConnRequest, stream string, log *slog.Logger) error {
	claim, err := s.cfg.Claim(stream, 2)
	if err != nil {
		return refuse(gosrt.REJX_CONFLICT, err)
	}
	defer claim.Release()
	conn, err := s.accept(req)
	if err != nil {
		return err
	}
	defer conn.Close()
	wd := newWatchdog(conn, s.cfg.HandshakeTimeout)
	defer wd.stop()
	rd, err := openTS(wd)
	if err != nil {
		s.rejected.Add(1)
		return err
	}
	t := pickTracks(rd.Tracks())
	if t.video == nil && t.audio == nil {
		s.rejected.Add(1)
		return fmt.Errorf("no supported track (H.264 video, AAC or Opus audio) among %v", t.ignored)
	}
	for _, name := range t.ignored {
		log.Warn("SRT track not supported; ignoring it", "codec", name)
	}
	p, err := ingest.NewPublisher(ingest.Config{SFU: s.cfg.SFU, Stream: stream, SourceID: "srt-" + stream,
		Claim: claim, FFmpeg: s.cfg.FFmpeg, Logger: log, Proto: "srt", Registry: s.cfg.Registry, SharedClock: true})
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	out, err := s.sinks(ctx, p, t, log)
	if err != nil {
		s.rejected.Add(1)
		return err
	}
	p.Ready()
	if p.AudioErr() == transcode.ErrNoFFmpeg.Error() {
		log.Error("this SRT stream has no sound: ffmpeg is needed to transcode AAC")
	}
	wd.live(s.cfg.ReadTimeout)
	s.npub.Add(1)
	defer s.npub.Add(-1)
	log.Info("SRT publisher live", "tracks", p.Describe())
	err = demux(rd, t, out)
	if errors.Is(err, io.EOF) {
		return errors.New("publisher left")
	}
	return fmt.Errorf("publisher: %w", err)
}

// sinks adds the publisher's tracks and returns what feeds them.
func (s *Server) sinks(ctx context.Context, p *ingest.Publisher, t tsTracks, log *slog.Logger) (tsSinks, error) {
	out := tsSinks{decodeError: func(err error) {
		s.decodeErrs.Add(1)
		log.Debug("skipping MPEG-TS data", "err", err)
	}}
	if t.video != nil {
		var write func(au [][]byte, pts time.Duration) error
		if _, hevc := t.video.Codec.(*mpegts.CodecH265); hevc {
			h, err := p.H265(nil, nil, nil) // VPS, SPS and PPS arrive in-band
			if err != nil {
				return out, err
			}
			write = h.WriteAU
		} else {
			h, err := p.H264(nil, nil) // SPS and PPS arrive in-band
			if err != nil {
				return out, err
			}
			write = h.WriteAU
		}
		out.h264 = func(au [][]byte, pts time.Duration) {
			if err := write(au, pts); err != nil {
				log.Debug("dropping video", "err", err)
			}
		}
	}
	if t.audio == nil {
		return out, nil
	}
	switch c := t.audio.Codec.(type) {
	case *mpegts.CodecMPEG4Audio:
		a, err := p.AAC(ctx, c.SampleRate, max(c.ChannelCount, 1)) //nolint:staticcheck // the ADTS channel count
		if err != nil {
			return out, err
		}
		out.aac = a.Write
	case *mpegts.CodecOpus:
		a, err := p.Opus()
		if err != nil {
			return out, err
		}
		out.opus = func(pkt []byte, pts time.Duration) {
			if err := a.WriteFrame(pkt, pts); err != nil {
				log.Debug("dropping audio", "err", err)
			}
		}
	}
	return out, nil
}
