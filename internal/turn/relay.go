package turn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

var errTCPRelay = errors.New("turn: TCP relay allocations (RFC 6062) are not supported")

// relayGen is the RelayAddressGenerator for one listener family. It binds
// relay sockets of that family (ignoring pion's fixed "udp4" request) with
// large buffers, announces the configured public IP, and wraps each socket
// so relayed traffic is counted and Close can release it.
type relayGen struct {
	net      string     // "udp4" or "udp6"
	bind     netip.Addr // local address relay sockets bind to
	announce netip.Addr // address put in XOR-RELAYED-ADDRESS
	buf      int
	srv      *Server
	owner    *batchReader // listener whose read loop flushes relay writes; nil for TCP
}

// Validate implements turn.RelayAddressGenerator.
func (g *relayGen) Validate() error {
	if !g.announce.IsValid() || !g.bind.IsValid() {
		return errors.New("turn: relay generator without address")
	}
	return nil
}

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (g *relayGen) AllocatePacketConn(_ string, port int) (net.PacketConn, net.Addr, error) {
	lc := net.ListenConfig{Control: bufferControl(g.buf, false)}
	pc, err := lc.ListenPacket(context.Background(), g.net, joinHostPort(g.bind, port))
	if err != nil {
		return nil, nil, fmt.Errorf("turn: bind relay socket: %w", err)
	}
	c := &relayConn{PacketConn: pc, stats: &g.srv.stats, self: g.srv.self, owner: g.owner, bc: newBatchConn(pc.(*net.UDPConn))}
	c.onClose = func() { g.srv.relays.remove(c) }
	if !g.srv.relays.add(c) {
		_ = pc.Close()
		return nil, nil, fmt.Errorf("turn: server closing: %w", net.ErrClosed)
	}
	local := pc.LocalAddr().(*net.UDPAddr)
	return c, &net.UDPAddr{IP: g.announce.AsSlice(), Port: local.Port}, nil
}

// AllocateConn implements turn.RelayAddressGenerator; TCP relaying is not
// offered (browsers never ask for it).
func (g *relayGen) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errTCPRelay
}

// relayConn counts relayed traffic with atomics: ReadFrom sees datagrams
// from peers (towards the client), WriteTo datagrams to peers.
//
// When owner is set (allocations made over a UDP listener), writes to
// peers are queued and sent with sendmmsg by owner's read loop, which is
// the only goroutine pion writes relay sockets from (ChannelData and Send
// indications are handled inline in the listener's read loop).
type relayConn struct {
	net.PacketConn
	stats   *counters
	self    *selfSet // datagrams to and from the server's own non-service ports are dropped
	once    sync.Once
	onClose func()

	owner   *batchReader
	bc      batchConn
	mu      sync.Mutex // guards pending against Close
	pending []ipv4.Message
	bufs    [][]byte
}

func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err == nil && c.self.blocks(addr) {
			continue
		}
		if err == nil {
			c.stats.relayedPackets.Add(1)
			c.stats.relayedBytes.Add(uint64(n))
		}
		return n, addr, err
	}
}

func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.self.blocks(addr) {
		return len(p), nil // as a datagram lost on the way
	}
	if c.owner == nil {
		n, err := c.PacketConn.WriteTo(p, addr)
		if err == nil {
			c.count(n)
		}
		return n, err
	}
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.owner.dirty = append(c.owner.dirty, c)
	}
	i := len(c.pending)
	if i == len(c.bufs) {
		c.bufs = append(c.bufs, make([]byte, 2048))
	}
	n := copy(c.bufs[i], p)
	c.pending = append(c.pending, ipv4.Message{Buffers: [][]byte{c.bufs[i][:n]}, Addr: addr})
	full := len(c.pending) >= batchSize
	c.mu.Unlock()
	if full {
		c.flush()
	}
	c.count(n)
	return n, nil
}

func (c *relayConn) count(n int) {
	c.stats.relayedPackets.Add(1)
	c.stats.relayedBytes.Add(uint64(n))
}

// flush sends the queued datagrams. A failed send drops the rest of the
// batch, as a full socket would drop a single datagram.
func (c *relayConn) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for done := 0; done < len(c.pending); {
		n, err := c.bc.WriteBatch(c.pending[done:], 0)
		if err != nil {
			break
		}
		done += n
	}
	clear(c.pending)
	c.pending = c.pending[:0]
}

// Close is idempotent: both Server.Close and pion's allocation teardown
// close relay sockets, and pion logs a second close's error as a failure.
func (c *relayConn) Close() error {
	var err error
	c.once.Do(func() {
		c.mu.Lock()
		c.pending = c.pending[:0]
		err = c.PacketConn.Close()
		c.mu.Unlock()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

// relaySet tracks open relay sockets so Server.Close can release them even
// though pion closes its allocation managers asynchronously.
type relaySet struct {
	mu     sync.Mutex
	conns  map[*relayConn]struct{}
	closed bool
}

func (r *relaySet) add(c *relayConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.conns == nil {
		r.conns = make(map[*relayConn]struct{})
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relaySet) remove(c *relayConn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// closeAll closes every relay socket and refuses new ones.
func (r *relaySet) closeAll() {
	r.mu.Lock()
	r.closed = true
	conns := make([]*relayConn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// counters are the atomics behind Stats.
type counters struct {
	allocations       atomic.Int64
	allocationsTotal  atomic.Uint64
	relayedBytes      atomic.Uint64
	relayedPackets    atomic.Uint64
	authFailures      atomic.Uint64
	permissionsDenied atomic.Uint64
	quotaRejections   atomic.Uint64
}

// Stats is a snapshot of server counters for metrics. Relayed traffic
// counts datagrams received on relay sockets from peers plus datagrams the
// relay sockets sent to peers, with their UDP payload bytes.
type Stats struct {
	Allocations       int    `json:"allocations"`
	AllocationsTotal  uint64 `json:"allocations_total"`
	RelayedBytes      uint64 `json:"relayed_bytes"`
	RelayedPackets    uint64 `json:"relayed_packets"`
	AuthFailures      uint64 `json:"auth_failures"`
	PermissionsDenied uint64 `json:"permissions_denied"`
	QuotaRejections   uint64 `json:"quota_rejections"`
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Allocations:       int(c.allocations.Load()),
		AllocationsTotal:  c.allocationsTotal.Load(),
		RelayedBytes:      c.relayedBytes.Load(),
		RelayedPackets:    c.relayedPackets.Load(),
		AuthFailures:      c.authFailures.Load(),
		PermissionsDenied: c.permissionsDenied.Load(),
		QuotaRejections:   c.quotaRejections.Load(),
	}
}
