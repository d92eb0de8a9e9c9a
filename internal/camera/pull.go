package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/sfu"
)

// pull runs one connection to the camera until it fails, ctx ends or (on
// demand) nobody watches; wasLive tells whether it got as far as playing.
func (m *Manager) pull(ctx context.Context, s *stream, log *slog.Logger) (wasLive bool, err error) {
	u, err := base.ParseURL(s.src.Source)
	if err != nil {
		return false, errors.New("source is not a URL")
	}
	dialer := &net.Dialer{Timeout: m.cfg.Timeout}
	c := &gortsplib.Client{
		Scheme: u.Scheme, Host: u.Host,
		ReadTimeout: m.cfg.Timeout, WriteTimeout: m.cfg.Timeout,
		DialContext: dialer.DialContext,
		UserAgent:   "Parley",
		OnPacketsLost: func(n uint64) {
			m.lost.Add(n)
			log.Debug("RTP packets lost", "packets", n)
		},
		OnDecodeError:     func(err error) { log.Debug("RTSP decode error", "err", err) },
		OnTransportSwitch: func(err error) { log.Info("RTSP transport switched", "why", err) },
	}
	switch s.src.Transport {
	case "tcp":
		p := gortsplib.ProtocolTCP
		c.Protocol = &p
	case "udp":
		p := gortsplib.ProtocolUDP
		c.Protocol = &p
	}
	if err := c.Start(); err != nil {
		return false, fmt.Errorf("starting the RTSP client: %w", err)
	}
	stop := context.AfterFunc(ctx, c.Close)
	defer func() {
		stop()
		c.Close()
	}()

	desc, _, err := c.Describe(u)
	if err != nil {
		return false, fmt.Errorf("DESCRIBE: %w", err)
	}
	chosen, err := choose(desc)
	if err != nil {
		return false, err
	}
	var claim ingest.Claim
	if m.cfg.Claim != nil {
		claim, err = m.cfg.Claim(s.name, len(chosen))
		if err != nil {
			return false, fmt.Errorf("claiming the stream name: %w", err)
		}
		defer claim.Release()
	}
	pub, err := ingest.NewPublisher(ingest.Config{SFU: m.cfg.SFU, Stream: s.name, SourceID: "camera-" + s.name, Proto: "camera", Registry: m.cfg.Registry,
		Claim: claim, FFmpeg: m.cfg.FFmpeg, Logger: log})
	if err != nil {
		return false, err
	}
	defer pub.Close() // before the claim's release: viewers park, then the name is free
	for _, ch := range chosen {
		if _, err := c.Setup(desc.BaseURL, ch.medi, 0, 0); err != nil {
			return false, fmt.Errorf("SETUP %s: %w", ch.forma.Codec(), err)
		}
		if err := m.track(ctx, c, ch.medi, ch.forma, pub); err != nil {
			return false, err
		}
	}
	if _, err := c.Play(nil); err != nil {
		return false, fmt.Errorf("PLAY: %w", err)
	}
	pub.Ready()
	tracks := pub.Describe()
	log.Info("camera live", "tracks", tracks)
	m.set(s, func(st *Status) { st.State, st.Error, st.Tracks = Live, "", tracks })

	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	var idle <-chan time.Time
	if s.src.OnDemand {
		t := time.NewTicker(max(m.idle(s.src)/4, 10*time.Millisecond))
		defer t.Stop()
		idle = t.C
	}
	lastSeen := time.Now()
	for {
		select {
		case err := <-waited:
			if ctx.Err() != nil {
				return true, ctx.Err()
			}
			return true, fmt.Errorf("reading: %w", err)
		case now := <-idle:
			if m.viewers(s.name) > 0 {
				lastSeen = now
			} else if now.Sub(lastSeen) >= m.idle(s.src) {
				c.Close()
				<-waited
				return true, errIdle
			}
		}
	}
}

// viewers counts what watches a stream: its participants that publish
// nothing (WHEP, browsers), or, when more, the subscriptions to its
// busiest track (which also counts sinks such as the HLS muxer, a
// recording, a push, RTMP and SRT readers).
func (m *Manager) viewers(name string) int {
	room, ok := m.cfg.SFU.LookupRoom(sfu.Streams, name)
	if !ok {
		return 0
	}
	pubs := map[string]bool{}
	subs := 0
	for _, t := range room.Tracks() {
		pubs[t.Publisher] = true
		subs = max(subs, t.Subscribers)
	}
	n := 0
	for _, p := range room.Participants() {
		if !pubs[p.ID()] {
			n++
		}
	}
	return max(n, subs)
}

// errNoTrack: the camera offers nothing Parley can forward.
type errNoTrack struct{ offered []string }

func (e errNoTrack) Error() string {
	if len(e.offered) == 0 {
		return "no supported track (the camera offers none)"
	}
	return "no supported track (the camera offers " + strings.Join(e.offered, ", ") + ")"
}

type choice struct {
	medi  *description.Media
	forma format.Format
}

// choose picks the camera's first video and first audio track Parley can
// forward.
func choose(desc *description.Session) ([]choice, error) {
	var out []choice
	var offered []string
	taken := map[string]bool{}
	for _, medi := range desc.Medias {
		for _, forma := range medi.Formats {
			offered = append(offered, forma.Codec())
			if k := kind(forma); k != "" && !taken[k] {
				taken[k] = true
				out = append(out, choice{medi: medi, forma: forma})
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, errNoTrack{offered: offered}
	}
	return out, nil
}

// kind is "video" or "audio" for a format Parley forwards, "" otherwise.
func kind(forma format.Format) string {
	switch f := forma.(type) {
	case *format.H264:
		if f.PacketizationMode <= 1 {
			return "video"
		}
	case *format.VP8, *format.VP9, *format.AV1, *format.H265:
		return "video"
	case *format.MPEG4Audio:
		if f.Config != nil {
			return "audio"
		}
	case *format.Opus:
		return "audio"
	case *format.G711:
		if f.SampleRate == 8000 && f.ChannelCount == 1 {
			return "audio"
		}
	}
	return ""
}

// track adds a chosen format to pub and installs its packet callback.
func (m *Manager) track(ctx context.Context, c *gortsplib.Client, medi *description.Media, forma format.Format, pub *ingest.Publisher) error {
	pts := func(pkt *rtp.Packet) (time.Duration, bool) {
		t, ok := c.PacketPTS(medi, pkt)
		if !ok {
			return 0, false
		}
		return ticks(t, forma.ClockRate()), true
	}
	switch f := forma.(type) {
	case *format.H264:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("H.264: %w", err)
		}
		h, err := pub.H264(f.SPS, f.PPS)
		if err != nil {
			return err
		}
		started := false
		m.onPacket(c, medi, forma, func(pkt *rtp.Packet) {
			t, ok := pts(pkt)
			if !ok {
				return
			}
			au, err := dec.Decode(pkt)
			if err != nil {
				if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious) {
					m.log.Debug("H.264 packet dropped", "err", err)
				}
				return
			}
			if !started && !h264.IsRandomAccess(au) {
				return
			}
			started = true
			_ = h.WriteAU(au, t)
		})
		return nil
	case *format.H265:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("H.265: %w", err)
		}
		h, err := pub.H265(f.SafeParams())
		if err != nil {
			return err
		}
		m.onPacket(c, medi, forma, func(pkt *rtp.Packet) {
			if t, ok := pts(pkt); ok {
				if au, err := dec.Decode(pkt); err == nil { // else more packets needed, or a lost fragment
					_ = h.WriteAU(au, t)
				}
			}
		})
		return nil
	case *format.MPEG4Audio:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("AAC: %w", err)
		}
		a, err := pub.AAC(ctx, f.Config.SampleRate, f.Config.ChannelCount)
		if err != nil {
			return err
		}
		m.onPacket(c, medi, forma, func(pkt *rtp.Packet) {
			aus, err := dec.Decode(pkt)
			if err != nil {
				return
			}
			for _, au := range aus {
				a.Write(au, 0) // not on a shared clock: the origin does not matter
			}
		})
		return nil
	case *format.Opus:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("Opus: %w", err)
		}
		a, err := pub.Opus()
		if err != nil {
			return err
		}
		m.onPacket(c, medi, forma, frames(a, pts, dec.Decode))
		return nil
	case *format.G711:
		dec, err := f.CreateDecoder()
		if err != nil {
			return fmt.Errorf("G.711: %w", err)
		}
		a, err := pub.G711(!f.MULaw)
		if err != nil {
			return err
		}
		m.onPacket(c, medi, forma, frames(a, pts, dec.Decode))
		return nil
	case *format.VP8, *format.VP9, *format.AV1:
		r, err := pub.Passthrough(passthroughCodec(f))
		if err != nil {
			return err
		}
		m.onPacket(c, medi, forma, func(pkt *rtp.Packet) { _ = r.WritePacket(pkt) })
		return nil
	}
	return fmt.Errorf("%s: not supported", forma.Codec())
}

// onPacket installs a packet callback that also counts the packet.
func (m *Manager) onPacket(c *gortsplib.Client, medi *description.Media, forma format.Format, cb func(*rtp.Packet)) {
	c.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
		m.received.Add(1)
		cb(pkt)
	})
}

// ticks converts a timestamp in clock units to a duration without
// overflowing (t*1e9 would after a day at 90 kHz).
func ticks(t int64, clock int) time.Duration {
	c := int64(clock)
	return time.Duration(t/c)*time.Second + time.Duration(t%c)*time.Second/time.Duration(c)
}

// frames is the packet callback of an audio track whose RTP packets each
// carry one frame.
func frames(a *ingest.Audio, pts func(*rtp.Packet) (time.Duration, bool), decode func(*rtp.Packet) ([]byte, error)) func(*rtp.Packet) {
	return func(pkt *rtp.Packet) {
		t, ok := pts(pkt)
		if !ok {
			return
		}
		if frame, err := decode(pkt); err == nil {
			_ = a.WriteFrame(frame, t)
		}
	}
}

// passthroughCodec is the WebRTC codec a passed-through camera track gets
// (pion's default payload types).
func passthroughCodec(f format.Format) webrtc.RTPCodecParameters {
	switch f.(type) {
	case *format.VP8:
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	case *format.VP9:
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}, PayloadType: 98}
	default:
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000}, PayloadType: 45}
	}
}
