package sfu

import (
	"net"
	"sync"

	"golang.org/x/net/ipv4"

	"github.com/parley/parley/internal/udpbatch"
)

// batchConn sits under pion's ICE UDP mux and sends what every subscriber
// writer writes in batches: WriteTo copies the datagram into a queue and
// returns, and one flusher goroutine hands the queue to the kernel with
// sendmmsg and GSO (internal/udpbatch). While the flusher is in the
// kernel, the next batch fills up, so the batches grow with the load and a
// lone packet waits only for one goroutine wake-up. Reads and everything else go straight to the socket.
//
// It forks nothing: pion writes to a net.PacketConn, this is one.
type batchConn struct {
	*net.UDPConn

	mu      sync.Mutex
	room    *sync.Cond     // signalled when fill was swapped out
	fill    []ipv4.Message // being filled by WriteTo
	spare   []ipv4.Message // flushed; its buffers are reused
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	flushed chan struct{} // closed when the flusher ended

	snd *udpbatch.Sender // owned by the flusher
}

const (
	batchCap  = 512 // datagrams queued before WriteTo waits for the flusher
	batchSize = maxPacketSize + 64
)

func newBatchConn(c *net.UDPConn) *batchConn {
	b := &batchConn{
		UDPConn: c,
		fill:    make([]ipv4.Message, 0, batchCap),
		spare:   make([]ipv4.Message, 0, batchCap),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		flushed: make(chan struct{}),
		snd:     udpbatch.NewSender(udpbatch.NewConn(c)),
	}
	b.room = sync.NewCond(&b.mu)
	go b.flusher()
	return b
}

// WriteTo queues one datagram. When the queue is full (the kernel is not
// keeping up) it waits for the flusher, as a blocking sendto would: nothing
// is dropped or reordered here.
func (b *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if len(p) > batchSize {
		return b.UDPConn.WriteTo(p, addr)
	}
	b.mu.Lock()
	for len(b.fill) == cap(b.fill) && !b.closed {
		b.room.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		return b.UDPConn.WriteTo(p, addr)
	}
	n := len(b.fill)
	b.fill = b.fill[:n+1]
	m := &b.fill[n]
	if m.Buffers == nil {
		m.Buffers = [][]byte{make([]byte, batchSize)}
	}
	m.Buffers[0] = m.Buffers[0][:copy(m.Buffers[0][:cap(m.Buffers[0])], p)]
	m.Addr = addr
	first := n == 0
	b.mu.Unlock()
	if first {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// flusher sends the queue in batches until Close.
func (b *batchConn) flusher() {
	defer close(b.flushed)
	for {
		select {
		case <-b.done:
			b.flush() // what was queued before Close
			return
		case <-b.wake:
		}
		b.flush()
	}
}

// flush swaps the queue out and sends it (two arrays take turns).
func (b *batchConn) flush() {
	b.mu.Lock()
	out := b.fill
	b.fill = b.spare[:0]
	b.mu.Unlock()
	b.room.Broadcast()
	b.snd.Send(out)
	b.mu.Lock()
	b.spare = out[:0] // its messages keep their buffers for the next fill
	b.mu.Unlock()
}

// Close stops the flusher (after it sent what was queued) and closes the
// socket.
func (b *batchConn) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.room.Broadcast()
	close(b.done)
	<-b.flushed
	return b.UDPConn.Close()
}
