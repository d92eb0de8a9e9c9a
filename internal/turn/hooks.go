package turn

import (
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
