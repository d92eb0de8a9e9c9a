// Package turn is Parley's embedded STUN/TURN server: pion/turn with TURN
// REST credentials (coturn's use-auth-secret scheme), a relay policy that
// keeps clients out of internal networks, per-user allocation quotas, and
// SO_REUSEPORT socket groups with large buffers so relayed media is not
// dropped under load.
package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	pturn "github.com/pion/turn/v4"

	"github.com/parley/parley/internal/auth"
)

// Config configures the embedded TURN server.
type Config struct {
	Listen string // "host:port" for UDP and TCP
	// TLSListen is "host:port" for TURN over TLS (RFC 5766's "turns:"),
	// served with TLS's certificate; "" or a nil TLS = no TLS listener.
	TLSListen string
	TLS       *tls.Config
	// TLSHandshake bounds a TLS client's handshake; 0 = 10 s. A client
	// that connects and stays silent is closed after it.
	TLSHandshake time.Duration
	PublicIP     string         // announced relay IP; "" = listener IP (or first non-loopback for wildcard)
	Secret       []byte         // TURN REST shared secret
	AllowPeers   []netip.Prefix // exceptions to the deny list
	Quota        int            // allocations per user; 0 = 10
	PerIP        int            // allocations per client address (IPv6: per /64), across users; 0 = 32
	Sockets      int            // UDP sockets; 0 = NumCPU
	Realm        string         // "" = "parley"
	// OwnAddrs are more of the server's own addresses (its HTTP and media
	// listeners' hosts). With PublicIP, the TURN listener's host and every
	// interface address they are refused as relay peers even where
	// AllowPeers would allow them (loopback excepted: AllowPeers decides).
	OwnAddrs []netip.Addr
	// ServicePorts are the UDP ports relayed clients may still reach on
	// the server's own addresses: the SFU's media port.
	ServicePorts []uint16
	Logger       *slog.Logger

	// SocketBuffer is the SO_RCVBUF/SO_SNDBUF size for listener and relay
	// sockets; 0 = 4 MiB, negative = OS default (for benchmarks).
	SocketBuffer int
}

// Server is a running STUN/TURN server. Close stops it.
type Server struct {
	cfg   Config
	log   *slog.Logger
	pion  *pturn.Server
	stats counters
	quota *quota
	self  *selfSet

	relays   relaySet
	tcpConns connSet
	udpAddr  net.Addr
	tcpAddr  net.Addr
	tlsAddr  net.Addr   // nil without a TLS listener
	announce netip.Addr // relay address of the first family, for ICEServers

	closeOnce sync.Once
	closeErr  error
}

// ICEServer is one entry of RTCConfiguration.iceServers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// New binds the UDP socket group and TCP listener for every address family
// of cfg.Listen and starts serving. It fails if a port is taken.
func New(cfg Config) (*Server, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, quota: newQuota(cfg.Quota, cfg.PerIP),
		self: newSelfSet(ownAddrs(cfg), cfg.ServicePorts)}
	sc, err := s.listen()
	if err != nil {
		return nil, err
	}
	s.pion, err = pturn.NewServer(sc)
	if err != nil {
		closeConfigs(sc)
		return nil, fmt.Errorf("turn: start pion server: %w", err)
	}
	tlsAddr := "off"
	if s.tlsAddr != nil {
		tlsAddr = s.tlsAddr.String()
	}
	s.log.Info("turn: listening", "udp", s.udpAddr.String(), "tcp", s.tcpAddr.String(), "tls", tlsAddr,
		"relay", s.announce.String(), "sockets", cfg.Sockets)
	return s, nil
}

func withDefaults(cfg Config) (Config, error) {
	if len(cfg.Secret) == 0 {
		return cfg, errors.New("turn: empty shared secret")
	}
	if cfg.Quota <= 0 {
		cfg.Quota = 10
	}
	if cfg.PerIP <= 0 {
		cfg.PerIP = 32
	}
	if cfg.Sockets <= 0 {
		cfg.Sockets = runtime.NumCPU()
	}
	if cfg.Realm == "" {
		cfg.Realm = "parley"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TLSHandshake <= 0 {
		cfg.TLSHandshake = 10 * time.Second
	}
	if cfg.SocketBuffer == 0 {
		cfg.SocketBuffer = defaultSocketBuffer
	}
	return cfg, nil
}

// listen binds all families (UDP+TCP, then TLS) and builds the pion
// configuration.
func (s *Server) listen() (pturn.ServerConfig, error) {
	sc := s.pionConfig()
	err := s.eachFamily(s.cfg.Listen, func(f family, port int) (int, error) {
		if err := s.addFamily(&sc, f, port); err != nil {
			return 0, err
		}
		return s.udpAddr.(*net.UDPAddr).Port, nil
	})
	if err == nil && s.cfg.TLSListen != "" && s.cfg.TLS != nil {
		err = s.eachFamily(s.cfg.TLSListen, func(f family, port int) (int, error) {
			return s.addTLS(&sc, f, port)
		})
	}
	if err != nil {
		closeConfigs(sc)
		return sc, err
	}
	return sc, nil
}

// eachFamily calls bind for every address family of the "host:port"
// listen, passing on the port the first bind got (for port 0). For a
// wildcard host a missing IPv6 stack is tolerated; a taken port is not.
func (s *Server) eachFamily(listen string, bind func(f family, port int) (int, error)) error {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("turn: listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("turn: listen port %q: %w", portStr, err)
	}
	fams, err := families(host)
	if err != nil {
		return err
	}
	for i, f := range fams {
		got, err := bind(f, port)
		if err != nil {
			if i > 0 && !errors.Is(err, syscall.EADDRINUSE) {
				s.log.Warn("turn: address family unavailable", "net", f.tcpNet, "listen", listen, "err", err)
				continue
			}
			return err
		}
		port = got
	}
	return nil
}

// addTLS binds the TURN-over-TLS listener of one family. Its connections
// are TURN over TCP once the handshake (done by pion's per-connection
// reader, not the accept loop) is over: same credentials, quotas and
// relay policy.
func (s *Server) addTLS(sc *pturn.ServerConfig, f family, port int) (int, error) {
	announce, err := announceIP(f, s.cfg.PublicIP)
	if err != nil {
		return 0, err
	}
	lc := net.ListenConfig{Control: bufferControl(s.cfg.SocketBuffer, false)}
	ln, err := lc.Listen(context.Background(), f.tcpNet, joinHostPort(f.host, port))
	if err != nil {
		return 0, fmt.Errorf("turn: listen tls %s %s: %w", f.tcpNet, joinHostPort(f.host, port), err)
	}
	gen := &relayGen{net: f.udpNet, bind: f.host, announce: announce, buf: s.cfg.SocketBuffer, srv: s}
	sc.ListenerConfigs = append(sc.ListenerConfigs, pturn.ListenerConfig{
		Listener: &trackingListener{Listener: &tlsListener{Listener: ln, cfg: s.cfg.TLS, timeout: s.cfg.TLSHandshake},
			set: &s.tcpConns},
		RelayAddressGenerator: gen, PermissionHandler: s.permissionHandler,
	})
	if s.tlsAddr == nil {
		s.tlsAddr = ln.Addr()
	}
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// addFamily binds one family and appends its sockets to sc.
func (s *Server) addFamily(sc *pturn.ServerConfig, f family, port int) error {
	announce, err := announceIP(f, s.cfg.PublicIP)
	if err != nil {
		return err
	}
	udp, tcp, err := listenFamily(f, port, s.cfg.Sockets, s.cfg.SocketBuffer)
	if err != nil {
		return err
	}
	gen := &relayGen{net: f.udpNet, bind: f.host, announce: announce, buf: s.cfg.SocketBuffer, srv: s}
	for _, c := range udp {
		br := newBatchReader(c.(*net.UDPConn))
		sg := *gen
		sg.owner = br
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, pturn.PacketConnConfig{
			PacketConn: br, RelayAddressGenerator: &sg, PermissionHandler: s.permissionHandler,
		})
	}
	sc.ListenerConfigs = append(sc.ListenerConfigs, pturn.ListenerConfig{
		Listener: &trackingListener{Listener: tcp, set: &s.tcpConns}, RelayAddressGenerator: gen,
		PermissionHandler: s.permissionHandler,
	})
	if s.udpAddr == nil {
		s.udpAddr, s.tcpAddr, s.announce = udp[0].LocalAddr(), tcp.Addr(), announce
	}
	return nil
}

func (s *Server) pionConfig() pturn.ServerConfig {
	return pturn.ServerConfig{
		Realm:         s.cfg.Realm,
		LoggerFactory: slogFactory{s.log},
		AuthHandler:   s.authHandler,
		QuotaHandler:  s.quotaHandler,
		EventHandler: pturn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onAllocationCreated,
			OnAllocationDeleted: s.onAllocationDeleted,
			OnAllocationError:   s.onAllocationError,
		},
	}
}

func closeConfigs(sc pturn.ServerConfig) {
	for _, c := range sc.PacketConnConfigs {
		_ = c.PacketConn.Close()
	}
	for _, l := range sc.ListenerConfigs {
		_ = l.Listener.Close()
	}
}

// announceIP picks the relay address clients are told for family f:
// PublicIP if it is of f's family, else the bind address, else (wildcard)
// the first non-loopback interface address of the family, else loopback.
func announceIP(f family, public string) (netip.Addr, error) {
	is4 := f.host.Is4()
	if public != "" {
		a, err := netip.ParseAddr(public)
		if err != nil {
			return a, fmt.Errorf("turn: public IP %q: %w", public, err)
		}
		if a = a.Unmap(); a.Is4() == is4 {
			return a, nil
		}
	}
	if !f.host.IsUnspecified() {
		return f.host, nil
	}
	if a, ok := firstInterfaceIP(is4); ok {
		return a, nil
	}
	if is4 {
		return netip.MustParseAddr("127.0.0.1"), nil
	}
	return netip.IPv6Loopback(), nil
}

// firstInterfaceIP returns the first global unicast address of a family,
// skipping link-local addresses that peers elsewhere cannot reach.
func firstInterfaceIP(is4 bool) (netip.Addr, bool) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr().Unmap()
		if ip.Is4() == is4 && ip.IsGlobalUnicast() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// Close stops listening, closes every client connection and relay socket,
// and waits (bounded) for pion to retire the allocations, so the ports can
// be bound again as soon as it returns.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if err := s.pion.Close(); err != nil {
			s.closeErr = fmt.Errorf("turn: close: %w", err)
		}
		s.tcpConns.closeAll()
		s.relays.closeAll()
		deadline := time.Now().Add(2 * time.Second)
		for s.stats.allocations.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	})
	return s.closeErr
}

// UDPAddr is the bound UDP address (of the first family for wildcards).
func (s *Server) UDPAddr() net.Addr { return s.udpAddr }

// TCPAddr is the bound TCP address (of the first family for wildcards).
func (s *Server) TCPAddr() net.Addr { return s.tcpAddr }

// TLSAddr is the bound TURN-over-TLS address, nil when there is none.
func (s *Server) TLSAddr() net.Addr { return s.tlsAddr }

// ICEServers returns a stun: URL and turn: URLs (UDP and TCP transports,
// and a turns: URL when TURN over TLS is on) with a fresh REST credential for user valid for ttl. The host is
// PublicIP when set (that is where relays live), else host (the name
// clients reached Parley at; a ":port" suffix is dropped), else the relay
// address.
func (s *Server) ICEServers(host, user string, ttl time.Duration) []ICEServer {
	port := strconv.Itoa(s.udpAddr.(*net.UDPAddr).Port)
	hp := net.JoinHostPort(s.iceHost(host), port)
	cred := auth.NewTURNCredential(s.cfg.Secret, user, ttl, time.Now())
	urls := []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
	if s.tlsAddr != nil {
		tp := strconv.Itoa(s.tlsAddr.(*net.TCPAddr).Port)
		urls = append(urls, "turns:"+net.JoinHostPort(s.iceHost(host), tp)+"?transport=tcp")
	}
	return []ICEServer{
		{URLs: []string{"stun:" + hp}},
		{URLs: urls, Username: cred.Username, Credential: cred.Password},
	}
}

func (s *Server) iceHost(host string) string {
	if s.cfg.PublicIP != "" {
		return s.cfg.PublicIP
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if host == "" {
		return s.announce.String()
	}
	return host
}
