package turn

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	pturn "github.com/pion/turn/v4"

	"github.com/parley/parley/internal/auth"
)

// authHandler returns the long-term key for a TURN REST username. Expired
// or malformed usernames and foreign realms are refused here; a wrong
// password surfaces later as a MESSAGE-INTEGRITY mismatch (see onAuth).
func (s *Server) authHandler(username, realm string, src net.Addr) ([]byte, bool) {
	exp, _, ok := auth.TURNExpiry(username)
	if !ok || !time.Now().Before(exp) || realm != s.cfg.Realm {
		s.stats.authFailures.Add(1)
		s.log.Debug("turn: credential refused", "username", username, "client", src.String())
		return nil, false
	}
	return pturn.GenerateAuthKey(username, realm, auth.TURNPassword(s.cfg.Secret, username)), true
}

// onAuth counts MESSAGE-INTEGRITY failures, i.e. wrong passwords.
func (s *Server) onAuth(src, _ net.Addr, _, username, _, method string, verdict bool) {
	if !verdict {
		s.stats.authFailures.Add(1)
		s.log.Debug("turn: bad message integrity", "username", username, "method", method, "client", src.String())
	}
}

func (s *Server) quotaHandler(username, _ string, src net.Addr) bool {
	switch s.quota.allow(username, src) {
	case "":
		return true
	case refusedIP:
		s.log.Info("turn: allocation quota per client address reached", "client", src.String(), "quota", s.cfg.PerIP)
	default:
		s.log.Info("turn: allocation quota reached", "user", userOf(username), "quota", s.cfg.Quota)
	}
	s.stats.quotaRejections.Add(1)
	return false
}

func (s *Server) onAllocationCreated(src, _ net.Addr, _, username, _ string, relay net.Addr, _ int) {
	s.quota.created(username, src)
	s.stats.allocations.Add(1)
	s.stats.allocationsTotal.Add(1)
	s.log.Debug("turn: allocation created", "user", userOf(username), "client", src.String(), "relay", relay.String())
}

func (s *Server) onAllocationDeleted(src, _ net.Addr, _, username, _ string) {
	s.quota.deleted(username, src)
	s.stats.allocations.Add(-1)
	s.log.Debug("turn: allocation deleted", "user", userOf(username), "client", src.String())
}

// onAllocationError fires for any request pion failed to handle; it only
// matters to the quota when an Allocate failed after its slot was granted.
func (s *Server) onAllocationError(src, _ net.Addr, _, _ string) {
	s.quota.failed(src)
}

// tlsListener is tls.NewListener whose connections finish their handshake
// within timeout: the handshake runs on the first Read (in pion's
// per-connection reader, never in its accept loop), under a deadline.
type tlsListener struct {
	net.Listener
	cfg     *tls.Config
	timeout time.Duration
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.cfg), timeout: l.timeout}, nil
}

type tlsConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *tlsConn) Read(b []byte) (int, error) {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(c.timeout))
		c.err = c.Conn.Handshake()
		_ = c.Conn.SetDeadline(time.Time{})
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(b)
}

// trackingListener records accepted TCP connections: closing a
// net.Listener leaves accepted connections open, and pion only closes them
// when the client hangs up, so Server.Close must do it.
type trackingListener struct {
	net.Listener
	set *connSet
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, set: l.set}
	if !l.set.add(tc) {
		_ = c.Close()
	}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.set.remove(c) })
	return err
}

// connSet is the set of open client TCP connections.
type connSet struct {
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func (s *connSet) add(c *trackedConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*trackedConn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) remove(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
