// Package srt serves SRT callers: encoders publishing a stream
// (srt://host:8890?streamid=publish:<stream>) and players reading one
// (streamid=read:<stream>), both with MPEG-TS inside. A publisher's
// H.264 becomes the stream's SFU video track, its AAC is transcoded to
// Opus and its Opus passes through (internal/ingest); a reader gets the
// live stream's H.264 and Opus tracks, from any publisher (WHIP, RTMP,
// SRT), muxed as MPEG-TS. The SRT Access Control form
// "#!::r=<stream>,m=publish|request,t=<token>" is read too.
//
// Every session is checked by Config.Authorize (the token rides as the
// streamid's third part or as t=). Refusals happen in the handshake with
// SRT's rejection codes: 1400 bad streamid, 1401 not authorized, 1402 too
// many connections from the address, 1404 stream not live, 1407 stream
// busy, 1415 no track a reader can take.
//
// Limits: Config.ConnsPerIP sessions per client address; the first
// MPEG-TS tables must arrive within Config.HandshakeTimeout (and within
// maxSetupBytes), then data at least every Config.ReadTimeout; payloads
// are at most 1456 bytes (SRT's MTU check); a reader's queue holds
// Config.ReaderQueue units and drops (to the next keyframe) beyond.
package srt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/parley/parley/internal/clientip"
	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/limit"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
	"github.com/parley/parley/pkg/protocol"
)

// Config configures the server.
type Config struct {
	// Listen is the UDP address, e.g. ":8890" or "127.0.0.1:0".
	Listen string
	SFU    *sfu.SFU
	// Authorize decides every publish and read (Proto "srt"); nil allows all.
	Authorize ingest.Authorizer
	// Claim takes a stream name for a publisher against every other
	// publisher (WHIP, RTMP, RTSP); required.
	Claim ingest.Claimer
	// ValidStream checks a stream name; nil is WHIP's rule.
	ValidStream func(string) bool
	// ConnsPerIP bounds sessions per client address; 0 means 10.
	ConnsPerIP int
	// HandshakeTimeout bounds the time from accepting a publisher to its
	// MPEG-TS tables; 0 means 10 s. ReadTimeout is the longest silence
	// after (for readers: of the SRT peer); 0 means 10 s.
	HandshakeTimeout, ReadTimeout time.Duration
	// Latency is the SRT receive latency this side asks for; 0 means
	// 120 ms (the caller may ask for more).
	Latency time.Duration
	// ReaderQueue is how many access units wait for a slow reader before
	// they are dropped; 0 means 256.
	ReaderQueue int
	// FFmpeg is the ffmpeg binary for AAC; "" looks it up on PATH.
	FFmpeg string
	// Registry lists live publishers for the streams\' status; nil for none.
	Registry *ingest.Registry
	// Tap reads live streams for readers; nil makes one for this server.
	Tap    *tap.Hub
	Logger *slog.Logger
}

// Stats are the server's counters.
type Stats struct {
	Sessions            int // callers being decided or served
	Publishers, Readers int
	Accepted            uint64 // sessions accepted
	Refused             uint64 // refused by the per-address limit
	Rejected            uint64 // refused: streamid, access, busy, not live, codecs
	ReaderDrops         uint64 // access units dropped for slow readers
	DecodeErrors        uint64 // MPEG-TS errors skipped in publishers' streams
}

// Server is a running SRT listener.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ln    gosrt.Listener
	conns *limit.Conns
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	seq   atomic.Uint64

	accepted, refused, rejected, drops, decodeErrs atomic.Uint64
	nsess, npub, nread                             atomic.Int64

	ownTap *tap.Hub // made for this server when Config.Tap is nil
}

// maxSetupBytes bounds what a publisher may send before its MPEG-TS
// tables are found.
const maxSetupBytes = 4 << 20

// Listen binds the address and serves in the background until Close.
func Listen(cfg Config) (*Server, error) {
	if cfg.SFU == nil || cfg.Claim == nil {
		return nil, errors.New("srt: Config.SFU and Config.Claim are required")
	}
	cfg.ConnsPerIP = cmp.Or(max(cfg.ConnsPerIP, 0), 10)
	cfg.HandshakeTimeout = cmp.Or(max(cfg.HandshakeTimeout, 0), 10*time.Second)
	cfg.ReadTimeout = cmp.Or(max(cfg.ReadTimeout, 0), 10*time.Second)
	cfg.Latency = cmp.Or(max(cfg.Latency, 0), 120*time.Millisecond)
	cfg.ReaderQueue = cmp.Or(max(cfg.ReaderQueue, 0), 256)
	if cfg.ValidStream == nil {
		cfg.ValidStream = protocol.ValidRoom
	}
	sc := GoSRTConfig()
	sc.ReceiverLatency, sc.PeerLatency = cfg.Latency, cfg.Latency
	// sc.PeerIdleTimeout stays gosrt's 5 s: a caller that sends nothing,
	// not even SRT keepalives (one a second), is gone.
	sc.PayloadSize = gosrt.MAX_PAYLOAD_SIZE
	ln, err := gosrt.Listen("srt", cfg.Listen, sc)
	if err != nil {
		return nil, fmt.Errorf("srt: listen %s: %w", cfg.Listen, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log.With("listener", "srt"), ln: ln, conns: limit.NewConns(cfg.ConnsPerIP)}
	s.ctx, s.stop = context.WithCancel(context.Background())
	if s.cfg.Tap == nil {
		s.ownTap = tap.New(s.ctx, tap.Config{SFU: cfg.SFU, FFmpeg: cfg.FFmpeg, Logger: log})
		s.cfg.Tap = s.ownTap
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the bound UDP address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats reports the counters.
func (s *Server) Stats() Stats {
	return Stats{Sessions: int(s.nsess.Load()), Publishers: int(s.npub.Load()), Readers: int(s.nread.Load()), Accepted: s.accepted.Load(),
		Refused: s.refused.Load(), Rejected: s.rejected.Load(), ReaderDrops: s.drops.Load(), DecodeErrors: s.decodeErrs.Load()}
}

// Close stops listening, ends every session and waits for them.
func (s *Server) Close() error {
	s.stop()
	s.ln.Close() // closes every connection too
	s.wg.Wait()
	if s.ownTap != nil {
		s.ownTap.Wait()
	}
	return nil
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		req, err := s.ln.Accept2()
		if err != nil {
			if s.ctx.Err() == nil && !errors.Is(err, gosrt.ErrListenerClosed) {
				s.log.Warn("srt listener ended", "err", err)
			}
			return
		}
		release, ok := s.conns.Acquire(clientip.Key(clientip.Addr(req.RemoteAddr())))
		if !ok {
			s.refused.Add(1)
			s.log.Info("refusing SRT caller: too many sessions from this address", "remote", req.RemoteAddr(), "conns_per_ip", s.cfg.ConnsPerIP)
			req.Reject(gosrt.REJX_OVERLOAD)
			continue
		}
		s.nsess.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.nsess.Add(-1)
			defer release()
			s.handle(req)
		}()
	}
}

// refusal is a handshake rejection with its reason.
type refusal struct {
	code gosrt.RejectionReason
	err  error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(code gosrt.RejectionReason, err error) error { return &refusal{code: code, err: err} }

// handle decides one connection request and runs the session it becomes.
func (s *Server) handle(req gosrt.ConnRequest) {
	log := s.log.With("remote", req.RemoteAddr())
	err := s.session(req, log)
	var r *refusal
	if errors.As(err, &r) {
		s.rejected.Add(1)
		req.Reject(r.code)
		log.Info("SRT caller refused", "streamid", redact(req.StreamId()), "code", int(r.code), "err", r.err)
		return
	}
	if err != nil {
		log.Info("SRT session ended", "err", err)
	}
}

// redact keeps tokens out of logged streamids, and keeps them short.
func redact(s string) string {
	if i := strings.Index(s, "t="); strings.HasPrefix(s, "#!::") && i >= 0 {
		s = s[:i+2] + "…"
	} else if a, b, ok := strings.Cut(s, ":"); ok && !strings.HasPrefix(s, "#") {
		if stream, _, ok := strings.Cut(b, ":"); ok {
			s = a + ":" + stream + ":…"
		}
	}
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// session checks the request and, once accepted, runs it to its end.
func (s *Server) session(req gosrt.ConnRequest, log *slog.Logger) error {
	if req.Version() < 5 {
		return refuse(gosrt.REJ_VERSION, errors.New("SRT v4 callers send no streamid; use SRT 1.3 or newer"))
	}
	id, err := ParseStreamID(req.StreamId(), s.cfg.ValidStream)
	if err != nil {
		return refuse(gosrt.REJX_BAD_REQUEST, err)
	}
	if req.IsEncrypted() {
		return refuse(gosrt.REJ_UNSECURE, errors.New("SRT encryption (passphrase) is not supported; drop the passphrase"))
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	end, err := s.cfg.Authorize.Authorize(ctx, ingest.Request{Action: id.Action, Proto: "srt", Stream: id.Stream,
		Token: id.Token, Remote: clientip.Addr(req.RemoteAddr()), ID: fmt.Sprintf("srt-%d", s.seq.Add(1))})
	if err != nil {
		return refuse(gosrt.REJX_UNAUTHORIZED, err)
	}
	defer end()
	log = log.With("stream", id.Stream)
	if id.Action == ingest.Publish {
		return s.publish(req, id.Stream, log)
	}
	return s.read(req, id.Stream, log)
}

// accept turns the request into a connection, counted.
func (s *Server) accept(req gosrt.ConnRequest) (gosrt.Conn, error) {
	s.accepted.Add(1) // before the caller hears of it, so a caller that got in is counted
	conn, err := req.Accept()
	if err != nil {
		s.accepted.Add(^uint64(0))
		return nil, fmt.Errorf("accepting: %w", err)
	}
	return conn, nil
}
