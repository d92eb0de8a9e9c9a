// Package rtmp takes streams from OBS, ffmpeg and other RTMP encoders:
// rtmp://host:1935/live/<stream> publishes stream <stream> in the SFU's
// stream namespace, where WHEP and /w/<stream> watch it. H.264 passes
// through as RTP (packetization-mode=1); AAC is transcoded to Opus by an
// ffmpeg child (internal/transcode); Opus (enhanced RTMP) passes through.
//
// With auth on, the token rides in the URL's query
// (rtmp://host:1935/live/<stream>?token=<JWT>; in OBS the stream key
// "<stream>?token=<JWT>") and must grant publishing the stream. Token,
// address lists and the on_publish/on_play hooks are the server's one
// Authorizer (Config.Authorize); on_done fires when the session ends.
//
// Limits: each client address may hold Config.ConnsPerIP connections;
// the handshake, connect and publish commands and the first media must
// arrive within Config.HandshakeTimeout, and then a message at least every
// Config.ReadTimeout; RTMP messages are bounded by the library (10 MiB).
// A second publisher of a live stream (RTMP or WHIP) is refused.
// Players read any live stream at the same URL (read.go). The publishing
// media side (tracks, packetizing, transcoding) is internal/ingest's,
// shared with RTSP and SRT.
package rtmp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/protocol"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"

	"github.com/parley/parley/internal/clientip"
	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/limit"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
	"github.com/parley/parley/internal/transcode"
)

// Claim holds a stream name for one publisher.
type Claim = ingest.Claim

// Config configures the server.
type Config struct {
	// Listen is the TCP address, e.g. ":1935" or "127.0.0.1:0".
	Listen string
	SFU    *sfu.SFU
	// Authorize decides each publish and each read (play) (Proto "rtmp", the
	// URL's ?token=, the connection's address); nil allows everything.
	// The end it returns is called when the session ends.
	Authorize ingest.Authorizer
	// Claim takes the stream name against other publishers (WHIP too); it
	// fails while the stream is live. nil keeps names only among RTMP
	// publishers.
	Claim func(stream string, tracks int) (Claim, error)
	// ValidStream checks a stream name; nil accepts 1-64 of [A-Za-z0-9_.-].
	ValidStream func(string) bool
	// ConnsPerIP bounds connections per client address; 0 means 10.
	ConnsPerIP int
	// MaxConns bounds connections in all; 0 means 1000.
	MaxConns int
	// HandshakeTimeout bounds the time from accept to the first media;
	// 0 means 10 s. ReadTimeout is the longest silence after; 0 means 10 s.
	HandshakeTimeout, ReadTimeout time.Duration
	// Registry lists live publishers for the streams' status; nil for none.
	Registry *ingest.Registry
	// FFmpeg is the ffmpeg binary for AAC; "" looks it up on PATH.
	FFmpeg string
	// Tap reads live streams for players; nil makes one for this server.
	Tap    *tap.Hub
	Logger *slog.Logger
}

// Stats are the server's counters.
type Stats struct {
	Conns, Publishers int
	Readers           int    // RTMP players playing
	Accepted          uint64 // connections accepted
	Refused           uint64 // connections refused for the per-address or total limit
	Rejected          uint64 // publishes and reads refused: token, address lists, hook, name, busy, codecs
	AudioUnavailable  int    // live publishers whose AAC cannot be transcoded
}

// Server is a running RTMP listener.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ln    net.Listener
	conns *limit.Conns
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	accepted, refused, rejected  atomic.Uint64
	nconns, npub, noAudio, nread atomic.Int64

	ownTap *tap.Hub // made for this server when Config.Tap is nil

	mu   sync.Mutex
	open map[net.Conn]struct{}
}

// Listen binds the address and serves in the background until Close.
func Listen(cfg Config) (*Server, error) {
	if cfg.SFU == nil {
		return nil, errors.New("rtmp: Config.SFU is required")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("rtmp: listen %s: %w", cfg.Listen, err)
	}
	cfg.ConnsPerIP = cmp.Or(max(cfg.ConnsPerIP, 0), 10)
	cfg.MaxConns = cmp.Or(max(cfg.MaxConns, 0), 1000)
	cfg.HandshakeTimeout = cmp.Or(max(cfg.HandshakeTimeout, 0), 10*time.Second)
	cfg.ReadTimeout = cmp.Or(max(cfg.ReadTimeout, 0), 10*time.Second)
	if cfg.ValidStream == nil {
		cfg.ValidStream = protocol.ValidRoom // the same rule as WHIP's stream names
	}
	if cfg.Claim == nil {
		cfg.Claim = ingest.LocalClaimer()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log.With("listener", "rtmp"), ln: ln, conns: limit.NewConns(cfg.ConnsPerIP),
		open: map[net.Conn]struct{}{}}
	s.ctx, s.stop = context.WithCancel(context.Background())
	if s.cfg.Tap == nil {
		s.ownTap = tap.New(s.ctx, tap.Config{SFU: cfg.SFU, FFmpeg: cfg.FFmpeg, Logger: log})
		s.cfg.Tap = s.ownTap
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats reports the counters.
func (s *Server) Stats() Stats {
	return Stats{Conns: int(s.nconns.Load()), Publishers: int(s.npub.Load()), Readers: int(s.nread.Load()), Accepted: s.accepted.Load(),
		Refused: s.refused.Load(), Rejected: s.rejected.Load(), AudioUnavailable: int(s.noAudio.Load())}
}

// Close stops listening, ends every connection and waits for them.
func (s *Server) Close() error {
	s.stop()
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.ownTap != nil {
		s.ownTap.Wait()
	}
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept", "err", err)
			select { // a transient error (EMFILE): do not spin
			case <-time.After(50 * time.Millisecond):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		if s.nconns.Load() >= int64(s.cfg.MaxConns) {
			s.refused.Add(1)
			s.log.Warn("refusing connection: the server holds its maximum", "remote", c.RemoteAddr(), "max_conns", s.cfg.MaxConns)
			_ = c.Close()
			continue
		}
		release, ok := s.conns.Acquire(clientip.Key(clientip.Addr(c.RemoteAddr())))
		if !ok {
			s.refused.Add(1)
			s.log.Info("refusing connection: too many from this address", "remote", c.RemoteAddr(), "conns_per_ip", s.cfg.ConnsPerIP)
			_ = c.Close()
			continue
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			release()
			_ = c.Close()
			return
		}
		s.open[c] = struct{}{}
		s.mu.Unlock()
		s.accepted.Add(1)
		s.nconns.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.open, c)
				s.mu.Unlock()
				_ = c.Close()
				s.nconns.Add(-1)
				release()
			}()
			if err := s.handle(c); err != nil {
				s.log.Info("connection ended", "remote", c.RemoteAddr(), "err", err)
			}
		}()
	}
}

// errRejected marks a publish refused after the RTMP connect.
var errRejected = errors.New("publish refused")

// handle runs one connection to its end.
func (s *Server) handle(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sc := &gortmplib.ServerConn{RW: c}
	if err := sc.Initialize(); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if err := sc.AcceptConn(); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if !sc.Publish {
		return s.play(c, sc)
	}
	stream, token, err := parsePath(sc.URL, s.cfg.ValidStream)
	if err != nil {
		s.rejected.Add(1)
		_ = refuse(sc, "NetStream.Publish.BadName", err.Error())
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	log := s.log.With("stream", stream, "remote", c.RemoteAddr())
	end, err := s.cfg.Authorize.Authorize(s.ctx, ingest.Request{Action: ingest.Publish, Proto: "rtmp", Stream: stream,
		Token: token, Remote: remoteAddr(c), ID: newSessionID()})
	if err != nil {
		s.rejected.Add(1)
		_ = refuse(sc, "NetStream.Publish.Unauthorized", err.Error())
		log.Info("publish refused", "err", err)
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	defer end()
	r := &gortmplib.Reader{Conn: sc}
	if err := r.Initialize(); err != nil { // accepts the publish, reads the tracks
		return fmt.Errorf("reading tracks: %w", err)
	}
	claim, err := s.cfg.Claim(stream, len(r.Tracks()))
	if err != nil {
		s.rejected.Add(1)
		_ = refuse(sc, "NetStream.Publish.BadName", err.Error())
		log.Info("publish refused", "err", err)
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	defer claim.Release()
	p, err := ingest.NewPublisher(ingest.Config{SFU: s.cfg.SFU, Stream: stream, SourceID: "rtmp-" + stream,
		Claim: claim, FFmpeg: s.cfg.FFmpeg, Logger: log, Proto: "rtmp", Registry: s.cfg.Registry, SharedClock: true})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	noAudio := false
	defer func() {
		if noAudio {
			s.noAudio.Add(-1)
		}
		p.Close()
	}()
	if err := setup(ctx, p, r, log); err != nil {
		s.rejected.Add(1)
		log.Info("publish refused", "err", err)
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	if p.AudioErr() == transcode.ErrNoFFmpeg.Error() {
		noAudio = true
		s.noAudio.Add(1)
	}
	s.npub.Add(1)
	defer s.npub.Add(-1)
	log.Info("RTMP publisher live", "tracks", p.Describe())
	for {
		// Both ways: reading may write an acknowledgement (when the client
		// set a window size), which the handshake's deadline would cut.
		_ = c.SetDeadline(time.Now().Add(s.cfg.ReadTimeout))
		if err := r.Read(); err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
	}
}

// refuse answers the publish with an error status the encoder shows.
func refuse(sc *gortmplib.ServerConn, code, desc string) error {
	return sc.Write(&message.CommandAMF0{
		ChunkStreamID:   5,
		MessageStreamID: 0x1000000,
		Name:            "onStatus",
		Arguments: []any{nil, amf0.Object{
			{Key: "level", Value: "error"},
			{Key: "code", Value: code},
			{Key: "description", Value: desc},
		}},
	})
}

// parsePath takes the stream and token from rtmp://host/live/<stream>?token=<JWT>.
func parsePath(u *url.URL, valid func(string) bool) (stream, token string, err error) {
	if u == nil {
		return "", "", errors.New("no URL")
	}
	app, name, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !ok || app != "live" {
		return "", "", fmt.Errorf("publish to rtmp://host/live/<stream>, not %q", u.Path)
	}
	if !valid(name) {
		return "", "", fmt.Errorf("%q is not a stream name (1-64 of A-Z a-z 0-9 _ . -)", name)
	}
	return name, u.Query().Get("token"), nil
}

// setup adds a track per supported RTMP track (the first video and the
// first audio) and installs the callbacks that feed them.
func setup(ctx context.Context, p *ingest.Publisher, r *gortmplib.Reader, log *slog.Logger) error {
	for _, t := range r.Tracks() {
		switch c := t.Codec.(type) {
		case *codecs.H264:
			if p.HasVideo() {
				continue
			}
			h, err := p.H264(c.SPS, c.PPS)
			if err != nil {
				return err
			}
			bframes := false
			r.OnDataH264(t, func(pts, dts time.Duration, au [][]byte) {
				if pts != dts && !bframes {
					bframes = true
					p.Note("the encoder sends B-frames, which WebRTC viewers show out of order: set it to make none (x264: tune zerolatency or bframes=0)")
				}
				if err := h.WriteAU(au, pts); err != nil {
					log.Debug("dropping video", "err", err)
				}
			})
		case *codecs.MPEG4Audio:
			if p.HasAudio() {
				continue
			}
			if c.Config == nil {
				return errors.New("AAC track without its configuration")
			}
			a, err := p.AAC(ctx, c.Config.SampleRate, c.Config.ChannelCount)
			if err != nil {
				return err
			}
			r.OnDataMPEG4Audio(t, func(pts time.Duration, au []byte) { a.Write(au, pts) })
		case *codecs.Opus:
			if p.HasAudio() {
				continue
			}
			a, err := p.Opus()
			if err != nil {
				return err
			}
			r.OnDataOpus(t, func(pts time.Duration, pkt []byte) { _ = a.WriteFrame(pkt, pts) })
		case *codecs.VP9:
			if p.HasVideo() {
				continue
			}
			v, err := p.VP9()
			if err != nil {
				return err
			}
			r.OnDataVP9(t, func(pts time.Duration, frame []byte) {
				if err := v.WriteFrame(frame, pts); err != nil {
					log.Debug("dropping video", "err", err)
				}
			})
		case *codecs.AV1:
			if p.HasVideo() {
				continue
			}
			v, err := p.AV1()
			if err != nil {
				return err
			}
			r.OnDataAV1(t, func(pts time.Duration, tu [][]byte) {
				b, err := av1.Bitstream(tu).Marshal()
				if err == nil {
					err = v.WriteFrame(b, pts)
				}
				if err != nil {
					log.Debug("dropping video", "err", err)
				}
			})
		case *codecs.G711:
			if p.HasAudio() || c.ChannelCount != 1 {
				continue
			}
			a, err := p.G711(!c.MULaw)
			if err != nil {
				return err
			}
			r.OnDataG711(t, func(pts time.Duration, samples []byte) {
				for len(samples) > 0 { // 8000 samples/s, one byte each: cut into 20 ms frames
					n := min(len(samples), 160)
					_ = a.WriteFrame(samples[:n], pts)
					samples, pts = samples[n:], pts+time.Duration(n)*time.Second/8000
				}
			})
		case *codecs.H265:
			if p.HasVideo() {
				continue
			}
			h, err := p.H265(c.VPS, c.SPS, c.PPS)
			if err != nil {
				return err
			}
			r.OnDataH265(t, func(pts, _ time.Duration, au [][]byte) {
				if err := h.WriteAU(au, pts); err != nil {
					log.Debug("dropping video", "err", err)
				}
			})
		default:
			log.Warn("RTMP track not supported yet; ignoring it", "codec", fmt.Sprintf("%T", t.Codec))
		}
	}
	if !p.HasVideo() && !p.HasAudio() {
		return errors.New("no supported track (H.264, VP9 or AV1 video; AAC, Opus or G.711 audio)")
	}
	p.Ready()
	return nil
}

// remoteAddr is the client's address, unmapped.
func remoteAddr(c net.Conn) netip.Addr { return clientip.Addr(c.RemoteAddr()) }

// newSessionID names one session for the access hooks.
func newSessionID() string { return "rtmp-" + room.NewID() }
