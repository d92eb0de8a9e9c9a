package turn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/parley/parley/internal/udpbatch"
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
	c := newRelayConn(pc.(*net.UDPConn), &g.srv.stats, g.srv.self, g.owner)
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
// Reads come from recvmmsg batches (pion's relay loop of the allocation is
// the only reader); before each recvmmsg the owner's queue to clients is
// flushed, since that loop wrote the ChannelData of the previous batch
// there. When owner is set (allocations made over a UDP listener), writes
// to peers are queued and sent by owner's read loop before it reads again:
// it is the only goroutine pion writes relay sockets from (ChannelData and
// Send indications are handled inline in the listener's read loop).
type relayConn struct {
	net.PacketConn
	stats   *counters
	self    *selfSet // datagrams to and from the server's own non-service ports are dropped
	once    sync.Once
	onClose func()

	owner *batchReader
	bc    udpbatch.ReadWriter
	in    readBatch
	out   *sendQueue // to peers
}

func newRelayConn(pc *net.UDPConn, stats *counters, self *selfSet, owner *batchReader) *relayConn {
	bc := udpbatch.NewConn(pc)
	return &relayConn{PacketConn: pc, stats: stats, self: self, owner: owner, bc: bc, out: newSendQueue(pc, bc, false)}
}

func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.in.readFrom(c.bc, p, relayBatchSize, c)
		if err == nil && c.self.blocks(addr) {
			continue
		}
		if err == nil {
			c.count(n)
		}
		return n, addr, err
	}
}

// beforeRead sends the ChannelData this relay loop queued to clients.
func (c *relayConn) beforeRead() {
	if c.owner != nil {
		c.owner.out.flush()
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
	n, first, err := c.out.writeTo(p, addr)
	if err != nil {
		return n, err
	}
	if first {
		c.owner.dirty = append(c.owner.dirty, c)
	}
	c.count(n)
	return n, nil
}

func (c *relayConn) count(n int) {
	c.stats.relayedPackets.Add(1)
	c.stats.relayedBytes.Add(uint64(n))
}

// Close is idempotent: both Server.Close and pion's allocation teardown
// close relay sockets, and pion logs a second close's error as a failure.
func (c *relayConn) Close() error {
	var err error
	c.once.Do(func() {
		c.out.close()
		err = c.PacketConn.Close()
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
