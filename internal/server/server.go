// Package server wires Parley's planes together: it builds signaling,
// TURN and the web app from a config.Config, mounts the HTTP routes, and
// owns start-up and graceful shutdown.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/access"
	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/camera"
	"github.com/parley/parley/internal/clientip"
	"github.com/parley/parley/internal/cluster"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/hls"
	"github.com/parley/parley/internal/httpconn"
	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/limit"
	"github.com/parley/parley/internal/metrics"
	"github.com/parley/parley/internal/origin"
	"github.com/parley/parley/internal/push"
	"github.com/parley/parley/internal/record"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/internal/rtmp"
	"github.com/parley/parley/internal/rtsp"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/sfusignal"
	"github.com/parley/parley/internal/show"
	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/internal/srt"
	"github.com/parley/parley/internal/tap"
	"github.com/parley/parley/internal/turn"
	"github.com/parley/parley/internal/whip"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/web"
)

// Server is one running Parley.
type Server struct {
	cfg        config.Config
	log        *slog.Logger
	app        http.Handler // the browser app (web.Handler), one for every listener that serves pages
	metrics    *metrics.Registry
	rooms      *room.Manager
	hub        *signal.Hub
	turn       *turn.Server       // nil when off or external
	sfu        *sfu.SFU           // nil when media is off
	started    time.Time          // for the status's uptime
	counts     sessionCounts      // stream sessions by protocol, for the status
	taps       *tap.Hub           // streams read as access units: RTMP players, HLS, recording, restreaming
	tapStop    context.CancelFunc // ends the taps
	hls        *hls.Manager       // LL-HLS (hls.go), nil when --hls off or media is off
	hlsConns   *httpconn.Loop     // plain HTTP/1.1 connections taken over for HLS (hls.go), or nil
	hlsTokens  tokenCache         // tokens HLS requests showed, verified (hls.go)
	sources    *ingest.Registry   // live RTMP, RTSP, SRT and camera publishers, for the streams' status
	whip       *whip.Handler
	showWhip   *whip.Handler   // the shows' audio (sfu.Shows)
	rtmp       *rtmp.Server    // --rtmp, nil when off or media is off
	srt        *srt.Server     // --srt, nil when off or media is off
	rtsp       *rtsp.Server    // --rtsp, nil when off or media is off
	cameras    *camera.Manager // IP camera pulls, nil when media is off
	recorder   *record.Manager // recordings (record.go), nil when media is off
	camerasMu  sync.Mutex      // orders the management API's changes and saves
	pushes     *push.Manager   // restreaming, nil when media is off
	pushesMu   sync.Mutex      // orders the push API's changes and saves
	pprof      *sideServer     // --pprof, nil when off
	ops        *sideServer     // --ops, nil when off
	shows      *show.Registry  // light shows (show.go)
	bridge     *sfusignal.Bridge
	cluster    *cluster.Cluster // --cluster (cluster.go), nil when alone
	turnSecret []byte
	auth       *auth.Verifier // nil when auth is off
	origins    *origin.Policy // which pages may call the APIs (own names + --allow-origins)
	clients    *clientip.Resolver
	checks     *limit.Rate // the connection check's requests per address (check.go)
	mux        *http.ServeMux
	access     *access.Checker // CIDR lists and hooks (authorize.go), nil when media is off

	httpSrv *http.Server
	ln      net.Listener
	scheme  string

	streamWatch      *streamWatchers // wakes the streams' status events (streamevents.go)
	streamEventConns *limit.Conns    // status event connections per client address

	quit      context.Context // ends at Shutdown: long-lived answers (status events) stop
	quitNow   context.CancelFunc
	closeOnce sync.Once
	serveDone chan struct{}

	// clusterView is cluster for the signaling plane, which serves before
	// the node has joined (cluster_ops.go).
	clusterView atomic.Pointer[cluster.Cluster]
	nodeID      string // this node's ID in the cluster ("" alone)
	// clusterMedia relays streams and group rooms across nodes
	// (cluster_media.go); set after the SFU starts calling roomChanged,
	// hence atomic.
	clusterMedia atomic.Pointer[cluster.Media]
}

// New builds a server from a validated config. Nothing listens until Start.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, metrics: metrics.New(), rooms: room.NewManager(cfg.MaxRooms), sources: ingest.NewRegistry(),
		serveDone: make(chan struct{}), started: time.Now(),
		streamWatch: newStreamWatchers(), streamEventConns: limit.NewConns(streamEventsPerIP)}
	s.quit, s.quitNow = context.WithCancel(context.Background())
	// Auth is on with any of the secret, the public keys or the JWKS.
	keys := auth.Keys{Secret: []byte(cfg.AuthSecret)}
	for _, f := range []struct {
		flag, file string
		dst        *[]byte
	}{{"auth-public-key", cfg.AuthPublicKey, &keys.PublicKeys}, {"auth-jwks", cfg.AuthJWKS, &keys.JWKS}} {
		if f.file == "" {
			continue
		}
		b, err := os.ReadFile(f.file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.flag, err)
		}
		*f.dst = b
	}
	if len(keys.Secret) > 0 || len(keys.PublicKeys) > 0 || len(keys.JWKS) > 0 {
		v, err := auth.NewVerifier(keys)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		s.auth = v
	}
	s.metrics.RegisterRuntime()
	s.origins = ownOrigins(cfg)
	trusted, err := clientip.ParsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("trusted-proxies: %w", err)
	}
	s.clients = clientip.New(trusted)
	s.checks = limit.NewRate(checksPerMinute, time.Minute)
	s.turnSecret = []byte(cfg.TURNSecret)
	if len(s.turnSecret) == 0 {
		s.turnSecret = make([]byte, 32)
		_, _ = rand.Read(s.turnSecret)
	}
	var media signal.MediaRooms
	if cfg.MediaUDP != "off" {
		media = mediaRooms{s}
	}
	hubOpts := signal.Options{
		Media:      media,
		MaxMessage: cfg.MaxMessage, RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst, Outbox: cfg.Outbox,
		OutboxBytes: cfg.OutboxBytes, ByteRate: cfg.ByteRate, ByteBurst: cfg.ByteBurst,
		MaxSessions: cfg.MaxSessions, ConnsPerIP: cfg.ConnsPerIP, RoomsPerIP: cfg.RoomsPerIP, JoinTimeout: cfg.JoinTimeout.D(),
		ClientIP:     s.clients,
		PingInterval: cfg.PingInterval.D(), PollTimeout: cfg.PollTimeout.D(), SessionIdle: cfg.SessionIdle.D(),
		ResumeGrace: resumeGrace(cfg.ResumeGrace.D()),
		Auth:        s.auth, Origins: s.origins, Capacity: cfg.CapacityOf, Mode: cfg.ModeOf,
		ICEServers: s.iceServers, ICERefresh: iceRefresh(cfg), Rooms: s.rooms, Metrics: s.metrics, Logger: log,
		Nodes: s.otherNodes, MediaNode: s.mediaNode,
	}
	if cfg.Cluster != "" { // members move between nodes (signal/move.go)
		s.nodeID = cfg.ClusterNode
		if s.nodeID == "" {
			s.nodeID = room.NewID()
		}
		hubOpts.MoveKey, hubOpts.Node, hubOpts.Adopt = signal.MoveKey(s.turnSecret), s.nodeID, s.adopt
	}
	s.hub = signal.NewHub(hubOpts)
	s.app = web.Handler()
	s.mux = s.routes()
	return s, nil
}

// Start binds the HTTP listener and TURN, and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	// Media first: TURN must know the SFU's port (relayed clients may
	// reach it on the server's own addresses, and nothing else there).
	if err := s.startMedia(); err != nil {
		return err
	}
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		s.stopMedia()
		return err
	}
	if err := s.startTURN(tlsCfg); err != nil {
		s.stopMedia()
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.HTTP)
	if err != nil {
		s.stopPlanes()
		return fmt.Errorf("listen http %s: %w", s.cfg.HTTP, err)
	}
	s.scheme = "http"
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
		s.scheme = "https"
	} else if s.hls != nil && !s.cfg.HLSNetHTTP {
		ln = s.startHLSConns(ln) // hls.go
	}
	s.ln = ln
	s.httpSrv = &http.Server{
		Handler:           s.bodyLimits(s.hlsFirst(s.mux)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if err := s.startOps(ctx); err != nil {
		_ = ln.Close()
		s.stopPlanes()
		return err
	}
	go func() {
		defer close(s.serveDone)
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	if err := s.startPprof(ctx); err != nil {
		s.log.Error("profiler not started", "err", err)
	}
	if err := s.startCluster(ctx); err != nil {
		_ = s.Close()
		return err
	}
	if s.auth == nil {
		s.log.Warn("no --auth-secret, --auth-public-key or --auth-jwks: rooms are open to anyone who can reach this server (see docs/security.md)")
	}
	return nil
}

// startTURN starts the embedded STUN/TURN server; TURN over TLS uses the
// HTTPS certificate (tlsCfg), and without one stays off.
func (s *Server) startTURN(tlsCfg *tls.Config) error {
	if s.cfg.TURN == "off" || len(s.cfg.TURNExternal) > 0 {
		return nil
	}
	tlsListen := s.cfg.TURNTLS
	switch {
	case tlsListen == "off":
		tlsListen = ""
	case tlsCfg == nil:
		s.log.Info("TURN over TLS is off: the server has no certificate (--tls-cert and --tls-key, or --tls-self-signed)", "turn-tls", tlsListen)
		tlsListen = ""
	}
	allow := make([]netip.Prefix, 0, len(s.cfg.TURNAllow))
	for _, p := range s.cfg.TURNAllow {
		allow = append(allow, netip.MustParsePrefix(strings.TrimSpace(p))) // validated by config
	}
	own, ports := s.ownAddrs()
	t, err := turn.New(turn.Config{Listen: s.cfg.TURN, PublicIP: s.cfg.PublicIP, Secret: s.turnSecret,
		AllowPeers: allow, Quota: s.cfg.TURNQuota, PerIP: s.cfg.TURNPerIP, OwnAddrs: own, ServicePorts: ports,
		Sockets: s.cfg.TURNSockets, SocketBuffer: s.cfg.TURNBuffer, Logger: s.log,
		TLSListen: tlsListen, TLS: tlsCfg})
	if err != nil {
		return fmt.Errorf("turn: %w", err)
	}
	s.turn = t
	s.metrics.GaugeFunc("parley_turn_allocations", "TURN allocations open.", func() float64 { return float64(t.Stats().Allocations) })
	s.metrics.CounterFunc("parley_turn_allocations_total", "TURN allocations made.", func() float64 { return float64(t.Stats().AllocationsTotal) })
	s.metrics.CounterFunc("parley_turn_relayed_bytes_total", "Bytes relayed by TURN.", func() float64 { return float64(t.Stats().RelayedBytes) })
	s.metrics.CounterFunc("parley_turn_relayed_packets_total", "Packets relayed by TURN.", func() float64 { return float64(t.Stats().RelayedPackets) })
	s.metrics.CounterFunc("parley_turn_auth_failures_total", "TURN requests with bad or expired credentials.", func() float64 { return float64(t.Stats().AuthFailures) })
	s.metrics.CounterFunc("parley_turn_permissions_denied_total", "TURN permissions refused by the relay policy.", func() float64 { return float64(t.Stats().PermissionsDenied) })
	return nil
}

// ownAddrs are the hosts of the HTTP and media listeners when they are
// specific (TURN adds its own, --public-ip and the interfaces), and the
// SFU's UDP port, which relayed clients may still reach.
func (s *Server) ownAddrs() ([]netip.Addr, []uint16) {
	var addrs []netip.Addr
	for _, hp := range []string{s.cfg.HTTP, s.cfg.MediaUDP, s.cfg.MediaTCP} {
		if host, _, err := net.SplitHostPort(hp); err == nil {
			if a, err := netip.ParseAddr(host); err == nil {
				addrs = append(addrs, a)
			}
		}
	}
	var ports []uint16
	if s.sfu != nil {
		if ua, ok := s.sfu.UDPAddr().(*net.UDPAddr); ok {
			ports = append(ports, uint16(ua.Port))
		}
	}
	return addrs, ports
}

// stopPlanes closes media and TURN.
func (s *Server) stopPlanes() {
	s.stopMedia()
	s.stopTURN()
}

func (s *Server) stopTURN() {
	if s.turn != nil {
		if err := s.turn.Close(); err != nil {
			s.log.Warn("closing turn", "err", err)
		}
	}
}

// iceServers hands a member STUN/TURN with a fresh credential. host is
// what the client used to reach us, so TURN is reachable the same way.
func (s *Server) iceServers(host, member string) []protocol.ICEServer {
	ttl := s.cfg.TURNTTL.D()
	if len(s.cfg.TURNExternal) > 0 {
		cred := auth.NewTURNCredential(s.turnSecret, member, ttl, time.Now())
		return []protocol.ICEServer{{URLs: s.cfg.TURNExternal, Username: cred.Username, Credential: cred.Password}}
	}
	if s.turn == nil {
		return []protocol.ICEServer{}
	}
	if s.cfg.PublicIP != "" {
		host = s.cfg.PublicIP
	}
	var out []protocol.ICEServer
	for _, is := range s.turn.ICEServers(host, member, ttl) {
		out = append(out, protocol.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return out
}

// iceRefresh is how often members get fresh TURN credentials: at 3/4 of
// their lifetime, so a member that stays never holds expired ones (and one
// that left holds them for --turn-ttl at most). No TURN, no refresh.
func iceRefresh(cfg config.Config) time.Duration {
	if cfg.TURN == "off" && len(cfg.TURNExternal) == 0 {
		return 0
	}
	return cfg.TURNTTL.D() * 3 / 4
}

// URL is the base URL clients use, e.g. "http://127.0.0.1:8080".
func (s *Server) URL() string {
	return s.scheme + "://" + hostPortURL(s.ln.Addr().(*net.TCPAddr))
}

// TURN is the embedded TURN server, or nil.
func (s *Server) TURN() *turn.Server { return s.turn }

// TURNSecret is the shared secret TURN credentials are made with.
func (s *Server) TURNSecret() []byte { return s.turnSecret }

// SFU is the media server, or nil when media is off or not started (for
// tests, load tools and embedding).
func (s *Server) SFU() *sfu.SFU { return s.sfu }

// Metrics is the server's registry (for tests and embedding).
func (s *Server) Metrics() *metrics.Registry { return s.metrics }

// Shutdown drains gracefully: members get a close frame, HTTP requests
// finish, TURN allocations are released. ctx bounds the wait.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.quitNow()
		s.hub.Close(ctx)
		if err := s.shows.Close(ctx); err != nil {
			s.log.Warn("closing shows", "err", err)
		}
		if s.httpSrv != nil {
			err = s.httpSrv.Shutdown(ctx)
			<-s.serveDone
		}
		if s.hlsConns != nil {
			s.hlsConns.Close() // connections taken over for HLS, which net/http no longer tracks
		}
		s.ops.close(ctx)
		s.pprof.close(ctx)
		s.stopCluster()
		s.stopPlanes()
	})
	return err
}

// Close shuts down with a short grace period.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Shutdown(ctx)
}

// LogURLs tells the operator where to point a browser and what TURN runs.
func (s *Server) LogURLs() {
	port := s.ln.Addr().(*net.TCPAddr).Port
	s.log.Info("Parley is running", "open", s.URL()+"/")
	if addr := s.ln.Addr().(*net.TCPAddr); addr.IP.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				n, ok := a.(*net.IPNet)
				if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() {
					continue
				}
				note := ""
				if s.scheme == "http" {
					note = "browsers allow cameras only on https or localhost: add --tls-self-signed for LAN use"
				}
				s.log.Info("also reachable", "open", fmt.Sprintf("%s://%s/", s.scheme, net.JoinHostPort(n.IP.String(), fmt.Sprint(port))), "note", note)
			}
		}
	}
	switch {
	case s.turn != nil:
		tlsAddr := "off"
		if a := s.turn.TLSAddr(); a != nil {
			tlsAddr = a.String()
		}
		s.log.Info("STUN/TURN is running", "udp", s.turn.UDPAddr().String(), "tcp", s.turn.TCPAddr().String(), "tls", tlsAddr)
	case len(s.cfg.TURNExternal) > 0:
		s.log.Info("using external TURN", "urls", strings.Join(s.cfg.TURNExternal, ","))
	default:
		s.log.Info("TURN is off")
	}
	if s.sfu != nil {
		s.log.Info("media (SFU, WHIP, WHEP) is running", "udp", s.sfu.UDPAddr().String(), "whip", s.URL()+"/whip/STREAM", "whep", s.URL()+"/whep/STREAM")
	}
	switch {
	case s.ops != nil:
		s.log.Info("operations listener (metrics, stream status): keep it off the internet", "ops", s.OpsURL(), "metrics", s.OpsURL()+"/metrics", "health", s.URL()+"/healthz")
	case s.auth != nil:
		s.log.Info("operations listener is off (--ops off): metrics only to admin tokens on the main port", "metrics", s.URL()+"/metrics", "health", s.URL()+"/healthz")
	default:
		s.log.Info("operations listener is off (--ops off): no metrics", "health", s.URL()+"/healthz")
	}
}

// resumeGrace maps the configuration's "0: no resuming" to the hub's.
func resumeGrace(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
