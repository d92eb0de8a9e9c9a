// Package rtsp serves RTSP on its own port: cameras and ffmpeg push
// (ANNOUNCE/RECORD at rtsp://host:8554/<stream>) into the SFU's stream
// namespace, and players such as VLC, ffplay or an NVR read any live
// stream (DESCRIBE/SETUP/PLAY), whatever published it (WHIP, RTMP, RTSP),
// over UDP or interleaved TCP. The protocol is gortsplib's; the media
// side of a push is internal/ingest's (H.264 repacketized, AAC
// transcoded to Opus, Opus and G.711 framed, VP8/VP9/AV1 passed through).
//
// Access: the token is the password of the URL's credentials
// (rtsp://anyuser:<JWT>@host:8554/<stream>), sent as Basic auth after the
// server's 401 challenge, or the URL's token= (ffmpeg cuts credentials to
// 127 bytes); every ANNOUNCE, DESCRIBE and SETUP is checked by
// Config.Authorize (publish or read).
//
// Limits: Config.ConnsPerIP connections per client address, MaxSessions
// sessions in all, read/write/idle timeouts on every connection, a bounded
// write queue per reader (packets beyond it are dropped). A stream has one
// live publisher (the claim is shared with WHIP and RTMP); a second gets
// 503. A malformed request closes its connection only.
package rtsp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/auth"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/parley/parley/internal/clientip"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/limit"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/protocol"
)

// Config configures the server.
type Config struct {
	// Listen is the TCP address, e.g. ":8554" or "127.0.0.1:0".
	Listen string
	// UDP is the RTP port's address for the UDP transport (RTCP takes the
	// next port; the RTP port must be even): "" means port 8000 on
	// Listen's host, or a free pair when Listen's port is 0; "off" serves
	// interleaved TCP only (UDP clients get 461 and move to TCP).
	UDP string
	SFU *sfu.SFU
	// Authorize checks every publish and read; nil allows everything.
	Authorize ingest.Authorizer
	// Claim takes the stream name against other publishers (WHIP, RTMP);
	// nil keeps names only among this server's publishers.
	Claim ingest.Claimer
	// ValidStream checks a stream name; nil is WHIP's rule.
	ValidStream func(string) bool
	// ConnsPerIP bounds connections per client address; 0 means 10.
	ConnsPerIP int
	// MaxSessions bounds publish and read sessions in all; 0 means 200.
	MaxSessions int
	// ReadTimeout and WriteTimeout bound each read and write, and the
	// time from connecting to the first byte (0 means 10 s); IdleTimeout
	// is the longest silence of a connection without media (0 means 60 s).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// WriteQueueSize is each reader's packet queue (a power of two; 0
	// means 512).
	WriteQueueSize int
	// FFmpeg is the ffmpeg binary for AAC; "" looks it up on PATH.
	FFmpeg string
	// Demand, when set, is asked for a stream that is not live here when
	// a player describes it (an on-demand camera, or a stream on another
	// cluster node); it waits, up to ctx, and reports whether the stream
	// is live now.
	Demand func(ctx context.Context, stream string) bool
	// Registry lists live publishers for the streams\' status; nil for none.
	Registry *ingest.Registry
	Logger   *slog.Logger
}

// Stats are the server's counters.
type Stats struct {
	Conns, Publishers, Readers int
	Accepted                   uint64 // connections accepted
	Refused                    uint64 // connections refused for the per-address limit
	Rejected                   uint64 // publishes and reads refused: auth, name, busy, codecs, not live, limits
}

// Server is a running RTSP listener.
type Server struct {
	cfg   Config
	log   *slog.Logger
	srv   *gortsplib.Server
	ln    net.Listener
	udp   [2]net.PacketConn
	conns *limit.Conns
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	accepted, refused, rejected atomic.Uint64
	nconns, npub, nread         atomic.Int64
	ids                         atomic.Uint64 // Request.ID

	mu       sync.Mutex
	sessions map[*gortsplib.ServerSession]*session
	pending  map[*gortsplib.ServerConn]*reader // described, not yet set up
}

// Listen binds the addresses and serves in the background until Close.
func Listen(cfg Config) (*Server, error) {
	if cfg.SFU == nil {
		return nil, errors.New("rtsp: Config.SFU is required")
	}
	cfg.ConnsPerIP = cmp.Or(max(cfg.ConnsPerIP, 0), 10)
	cfg.MaxSessions = cmp.Or(max(cfg.MaxSessions, 0), 200)
	cfg.ReadTimeout = cmp.Or(max(cfg.ReadTimeout, 0), 10*time.Second)
	cfg.WriteTimeout = cmp.Or(max(cfg.WriteTimeout, 0), 10*time.Second)
	cfg.IdleTimeout = cmp.Or(max(cfg.IdleTimeout, 0), 60*time.Second)
	cfg.WriteQueueSize = cmp.Or(max(cfg.WriteQueueSize, 0), 512)
	if cfg.ValidStream == nil {
		cfg.ValidStream = protocol.ValidRoom
	}
	if cfg.Claim == nil {
		cfg.Claim = ingest.LocalClaimer()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log.With("listener", "rtsp"), conns: limit.NewConns(cfg.ConnsPerIP),
		sessions: map[*gortsplib.ServerSession]*session{}, pending: map[*gortsplib.ServerConn]*reader{}}
	s.ctx, s.stop = context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("rtsp: listen %s: %w", cfg.Listen, err)
	}
	s.ln = &limitListener{Listener: ln, s: s}
	s.srv = &gortsplib.Server{
		Handler:        s,
		RTSPAddress:    ln.Addr().String(),
		ReadTimeout:    cfg.ReadTimeout,
		WriteTimeout:   cfg.WriteTimeout,
		IdleTimeout:    cfg.IdleTimeout,
		WriteQueueSize: cfg.WriteQueueSize,
		MaxPacketSize:  1472,
		AuthMethods:    []auth.VerifyMethod{auth.VerifyMethodBasic}, // the token is the password: it must arrive as such
		Listen:         func(string, string) (net.Listener, error) { return s.ln, nil },
	}
	if err := s.listenUDP(); err != nil {
		_ = ln.Close()
		return nil, err
	}
	if err := s.srv.Start(); err != nil {
		_ = ln.Close()
		s.closeUDP()
		return nil, fmt.Errorf("rtsp: %w", err)
	}
	return s, nil
}

// listenUDP opens the RTP/RTCP port pair, handed to the library through
// its ListenPacket hook.
func (s *Server) listenUDP() error {
	if s.cfg.UDP == "off" {
		return nil
	}
	tcp := s.ln.Addr().(*net.TCPAddr)
	host, port := "", 8000
	if tcp.IP != nil && !tcp.IP.IsUnspecified() {
		host = tcp.IP.String()
	}
	if s.cfg.UDP != "" {
		h, p, err := net.SplitHostPort(s.cfg.UDP)
		if err != nil {
			return fmt.Errorf("rtsp: UDP address %q: %w", s.cfg.UDP, err)
		}
		if port, err = strconv.Atoi(p); err != nil || port < 0 || port > 65534 || port%2 != 0 {
			return fmt.Errorf("rtsp: UDP address %q: the RTP port must be even (RTCP takes the next)", s.cfg.UDP)
		}
		host = h
	} else if tcp.Port == 0 || s.cfg.Listen != "" && portOf(s.cfg.Listen) == "0" {
		port = 0
	}
	rtp, rtcp, err := udpPair(host, port)
	if err != nil {
		return fmt.Errorf("rtsp: UDP: %w", err)
	}
	s.udp = [2]net.PacketConn{rtp, rtcp}
	s.srv.UDPRTPAddress, s.srv.UDPRTCPAddress = rtp.LocalAddr().String(), rtcp.LocalAddr().String()
	s.srv.ListenPacket = func(_, addr string) (net.PacketConn, error) {
		switch addr {
		case s.srv.UDPRTPAddress:
			return rtp, nil
		case s.srv.UDPRTCPAddress:
			return rtcp, nil
		}
		return nil, fmt.Errorf("rtsp: no UDP socket for %s", addr)
	}
	return nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// udpPair opens an even port and the next one; port 0 finds a free pair.
func udpPair(host string, port int) (net.PacketConn, net.PacketConn, error) {
	if port != 0 {
		a, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, nil, err
		}
		b, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port+1)))
		if err != nil {
			_ = a.Close()
			return nil, nil, err
		}
		return a, b, nil
	}
	for range 100 {
		a, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, nil, err
		}
		p := a.LocalAddr().(*net.UDPAddr).Port
		if p%2 == 0 && p < 65535 {
			b, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(p+1)))
			if err == nil {
				return a, b, nil
			}
		}
		_ = a.Close()
	}
	return nil, nil, errors.New("no free pair of UDP ports")
}

func (s *Server) closeUDP() {
	for _, c := range s.udp {
		if c != nil {
			_ = c.Close()
		}
	}
}

// Addr is the bound TCP address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// UDPAddr is the bound RTP address, nil when UDP is off.
func (s *Server) UDPAddr() net.Addr {
	if s.udp[0] == nil {
		return nil
	}
	return s.udp[0].LocalAddr()
}

// Stats reports the counters.
func (s *Server) Stats() Stats {
	return Stats{Conns: int(s.nconns.Load()), Publishers: int(s.npub.Load()), Readers: int(s.nread.Load()),
		Accepted: s.accepted.Load(), Refused: s.refused.Load(), Rejected: s.rejected.Load()}
}

// Close stops listening, ends every connection and session and waits
// for them.
func (s *Server) Close() error {
	s.stop()
	s.srv.Close() // closes the listeners, connections and sessions (OnSessionClose cleans up)
	s.wg.Wait()
	return nil
}

// limitListener refuses connections beyond the per-address limit.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, ok := l.s.conns.Acquire(clientip.Key(clientip.Addr(c.RemoteAddr())))
		if !ok {
			l.s.refused.Add(1)
			l.s.log.Info("refusing connection: too many from this address", "remote", c.RemoteAddr(), "conns_per_ip", l.s.cfg.ConnsPerIP)
			_ = c.Close()
			continue
		}
		l.s.accepted.Add(1)
		lc := &limitConn{Conn: c, release: sync.OnceFunc(release), first: time.Now().Add(l.s.cfg.ReadTimeout)}
		_ = c.SetReadDeadline(lc.first)
		return lc, nil
	}
}

// limitConn releases its place on Close, must bring its first byte
// within ReadTimeout of the accept (the library would wait the idle
// timeout), and closes itself when that byte cannot start a request (the
// library would skip junk until the idle timeout).
type limitConn struct {
	net.Conn
	release func()
	first   time.Time   // the first byte's deadline
	started atomic.Bool // the first byte came
}

var errNotRTSP = errors.New("rtsp: not an RTSP request")

func (c *limitConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.started.Load() {
		c.started.Store(true)
		if p[0] < 'A' || p[0] > 'Z' {
			_ = c.Close()
			return 0, errNotRTSP
		}
	}
	return n, err
}

// SetReadDeadline keeps the first byte's deadline until it came.
func (c *limitConn) SetReadDeadline(t time.Time) error {
	if !c.started.Load() && (t.IsZero() || t.After(c.first)) {
		t = c.first
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *limitConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// session is what the server keeps of a publish or read session.
type session struct {
	stream string
	conn   *gortsplib.ServerConn // the connection that opened it
	end    func()                // the Authorizer's
	// publish
	claim  ingest.Claim
	pub    *ingest.Publisher
	cancel context.CancelFunc
	// read
	rd *reader
}

// OnConnOpen counts connections.
func (s *Server) OnConnOpen(*gortsplib.ServerHandlerOnConnOpenCtx) { s.nconns.Add(1) }

// OnConnClose drops what the connection described but never set up, and
// ends the sessions it opened: a UDP session would otherwise outlive its
// client until the media timeout, and a camera reconnecting meanwhile
// would find its stream busy.
func (s *Server) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	s.nconns.Add(-1)
	s.mu.Lock()
	rd := s.pending[ctx.Conn]
	delete(s.pending, ctx.Conn)
	for ss, se := range s.sessions {
		if se.conn == ctx.Conn {
			ss.Close()
		}
	}
	s.mu.Unlock()
	if rd != nil {
		rd.close()
	}
	if ctx.Error != nil && !errors.Is(ctx.Error, liberrors.ErrServerTerminated{}) {
		s.log.Debug("connection closed", "remote", ctx.Conn.NetConn().RemoteAddr(), "err", ctx.Error)
	}
}

// OnSessionClose ends what the session held: its tracks, claim or
// subscriptions, and its authorization.
func (s *Server) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	s.mu.Lock()
	se := s.sessions[ctx.Session]
	delete(s.sessions, ctx.Session)
	s.mu.Unlock()
	if se == nil {
		return
	}
	if se.pub != nil {
		s.npub.Add(-1)
		se.pub.Close()
		s.log.Info("RTSP publisher gone", "stream", se.stream, "err", ctx.Error)
	}
	if se.cancel != nil {
		se.cancel()
	}
	if se.claim != nil {
		se.claim.Release()
	}
	if se.rd != nil {
		if se.rd.playing() {
			s.nread.Add(-1)
		}
		se.rd.close()
	}
	se.end()
}

// sessionCount is how many sessions hold a publish or a read.
func (s *Server) sessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// refusal is a request answered with an error status.
type refusal struct {
	res *base.Response
	err error // for the library: liberrors.ErrServerAuth asks for credentials
}

// refuse answers with the status and, in its reason phrase (ffmpeg
// prints it), why; control characters are dropped from it.
func refuse(code base.StatusCode, why string) *refusal {
	why = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, why)
	return &refusal{res: &base.Response{StatusCode: code, StatusMessage: base.StatusMessages[code] + " (" + why + ")"}}
}

// access checks a request for stream against Config.Authorize: 401 with a
// Basic challenge when credentials are needed and none came, 401 for a
// token that does not verify, 403 for one that does not grant it.
func (s *Server) access(conn *gortsplib.ServerConn, req *base.Request, path, query string, action ingest.Action) (stream string, end func(), r *refusal) {
	stream, err := streamName(path, s.cfg.ValidStream)
	if err != nil {
		return "", nil, refuse(base.StatusBadRequest, err.Error())
	}
	token, given, err := credentials(req.Header["Authorization"], query)
	if err != nil {
		return "", nil, refuse(base.StatusBadRequest, err.Error())
	}
	id := fmt.Sprintf("rtsp-%d", s.ids.Add(1))
	end, err = s.cfg.Authorize.Authorize(s.ctx, ingest.Request{Action: action, Proto: "rtsp", Stream: stream, Token: token,
		Remote: clientip.Addr(conn.NetConn().RemoteAddr()), ID: id})
	switch {
	case err == nil:
		return stream, end, nil
	case !given:
		// Ask for credentials: the library adds the challenge.
		return "", nil, &refusal{res: &base.Response{StatusCode: base.StatusUnauthorized}, err: liberrors.ErrServerAuth{}}
	case errors.Is(err, httperr.ErrInsufficientScope):
		return "", nil, refuse(base.StatusForbidden, err.Error())
	default:
		return "", nil, refuse(base.StatusUnauthorized, err.Error())
	}
}

// reject counts and logs a refused request and answers it.
func (s *Server) reject(what string, conn *gortsplib.ServerConn, path string, r *refusal) (*base.Response, error) {
	if r.err == nil || r.res.StatusCode != base.StatusUnauthorized {
		s.rejected.Add(1)
		s.log.Info(what+" refused", "path", path, "remote", conn.NetConn().RemoteAddr(), "status", r.res.StatusMessage)
	}
	return r.res, r.err
}
