package turn

import (
	"net"
	"sync"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/parley/parley/internal/udpbatch"
)

const (
	batchSize      = 32                     // datagrams one recvmmsg on a listener may return
	relayBatchSize = 8                      // the same on a relay socket (its buffers are per allocation)
	datagramBuf    = 2048                   // bytes per queued or read datagram
	flushDelay     = 500 * time.Microsecond // longest a client-bound datagram may wait for a flush
)

// readBatch serves ReadFrom from recvmmsg batches. pion reads each socket
// with one ReadFrom (one recvfrom system call) per datagram; on this class
// of machine the system call and the goroutine park/unpark around it cost
// more than the TURN processing itself, so amortising them over a batch is
// the cheapest CPU win. Only one goroutine (pion's read loop of the socket)
// may read.
type readBatch struct {
	ms   []ipv4.Message
	n, i int
}

// beforeReader is told before a (possibly blocking) recvmmsg, to send what
// was queued while the previous batch was handled: a queued datagram then
// waits at most for one batch to be processed.
type beforeReader interface{ beforeRead() }

// readFrom returns the next buffered datagram, refilling the batch of
// size datagrams with one recvmmsg when it is used up. A datagram longer
// than p is truncated to len(p), as recvfrom would.
func (r *readBatch) readFrom(c udpbatch.ReadWriter, p []byte, size int, hook beforeReader) (int, net.Addr, error) {
	if r.i >= r.n {
		hook.beforeRead()
		if r.ms == nil {
			r.ms = make([]ipv4.Message, size)
			for i := range r.ms {
				r.ms[i].Buffers = [][]byte{make([]byte, datagramBuf)}
			}
		}
		n, err := c.ReadBatch(r.ms, 0)
		if err != nil {
			return 0, nil, err
		}
		r.n, r.i = n, 0
	}
	m := &r.ms[r.i]
	r.i++
	return copy(p, m.Buffers[0][:m.N]), m.Addr, nil
}

// sendQueue collects datagrams written to one socket and sends them in
// batches (sendmmsg, GSO) through a udpbatch.Sender. Whoever wrote flushes
// before it blocks reading (readBatch's hook); when other goroutines may
// write too, a timer flushes at most flushDelay after the first queued
// datagram. A full queue is sent by the writer that filled it.
type sendQueue struct {
	sock *net.UDPConn // oversized datagrams go straight to it

	mu     sync.Mutex
	snd    *udpbatch.Sender
	q      []ipv4.Message
	timer  *time.Timer // nil: no timer, every writer flushes
	armed  bool
	closed bool
}

func newSendQueue(sock *net.UDPConn, bc udpbatch.ReadWriter, timed bool) *sendQueue {
	s := &sendQueue{sock: sock, snd: udpbatch.NewSender(bc), q: make([]ipv4.Message, 0, udpbatch.MaxBatch)}
	if timed {
		s.timer = time.AfterFunc(time.Hour, s.flush)
		s.timer.Stop()
	}
	return s
}

// writeTo queues a copy of p for addr. first reports that the queue was
// empty before, i.e. the caller has to see that it gets flushed.
func (s *sendQueue) writeTo(p []byte, addr net.Addr) (n int, first bool, err error) {
	if len(p) > datagramBuf {
		s.flush() // keep the order
		n, err := s.sock.WriteTo(p, addr)
		return n, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false, net.ErrClosed
	}
	i := len(s.q)
	s.q = s.q[:i+1]
	m := &s.q[i]
	if m.Buffers == nil {
		m.Buffers = [][]byte{make([]byte, datagramBuf)}
	}
	m.Buffers[0] = m.Buffers[0][:copy(m.Buffers[0][:datagramBuf], p)]
	m.Addr = addr
	if len(s.q) == cap(s.q) {
		s.sendLocked()
	} else if s.timer != nil && !s.armed {
		s.armed = true
		s.timer.Reset(flushDelay)
	}
	return len(p), i == 0, nil
}

// flush sends what is queued.
func (s *sendQueue) flush() {
	s.mu.Lock()
	s.sendLocked()
	s.mu.Unlock()
}

func (s *sendQueue) sendLocked() {
	if s.armed {
		s.armed = false
		s.timer.Stop()
	}
	if len(s.q) == 0 || s.closed {
		return
	}
	s.snd.Send(s.q)
	for i := range s.q {
		s.q[i].Addr = nil
	}
	s.q = s.q[:0]
}

// close sends what is queued and refuses further writes.
func (s *sendQueue) close() {
	s.mu.Lock()
	s.sendLocked()
	s.closed = true
	s.mu.Unlock()
}

// batchReader is a listener socket as pion sees it: reads come from
// recvmmsg batches, writes to clients (responses from pion's read loop,
// ChannelData from every allocation's relay loop) are queued and sent in
// batches, and relay writes to peers queued by this read loop are sent
// before it reads again.
type batchReader struct {
	*net.UDPConn
	pc    udpbatch.ReadWriter
	in    readBatch
	out   *sendQueue   // to clients
	dirty []*relayConn // relay sockets with queued writes, see relayConn.WriteTo
}

func newBatchReader(c *net.UDPConn) *batchReader {
	pc := udpbatch.NewConn(c)
	return &batchReader{UDPConn: c, pc: pc, out: newSendQueue(c, pc, true)}
}

// ReadFrom implements net.PacketConn for pion's read loop.
func (b *batchReader) ReadFrom(p []byte) (int, net.Addr, error) {
	return b.in.readFrom(b.pc, p, batchSize, b)
}

// WriteTo queues a datagram to a client.
func (b *batchReader) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, _, err := b.out.writeTo(p, addr)
	return n, err
}

// beforeRead sends every queued relay write and what is queued to clients.
func (b *batchReader) beforeRead() {
	for i, c := range b.dirty {
		c.out.flush()
		b.dirty[i] = nil
	}
	b.dirty = b.dirty[:0]
	b.out.flush()
}

// Close sends what is queued to clients and closes the socket.
func (b *batchReader) Close() error {
	b.out.close()
	return b.UDPConn.Close()
}
