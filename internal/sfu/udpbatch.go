package sfu

import (
	"encoding/binary"
	"net"
	"sync"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// batchConn sits under pion's ICE UDP mux and sends what every subscriber
// writer writes in batches: WriteTo copies the datagram into a queue and
// returns, and one flusher goroutine hands the queue to the kernel with
// sendmmsg (one system call for up to batchMax datagrams instead of one
// each). While the flusher is in the kernel, the next batch fills up, so
// the batches grow with the load and a lone packet waits only for one
// goroutine wake-up. Reads and everything else go straight to the socket.
//
// It forks nothing: pion writes to a net.PacketConn, this is one.
type batchConn struct {
	*net.UDPConn
	bw *ipv4.PacketConn

	mu      sync.Mutex
	room    *sync.Cond     // signalled when fill was swapped out
	fill    []ipv4.Message // being filled by WriteTo
	spare   []ipv4.Message // flushed; its buffers are reused
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	flushed chan struct{} // closed when the flusher ended

	// owned by the flusher
	gso  bool           // the kernel takes UDP_SEGMENT (cleared on the first refusal)
	runs []gsoRun       // the queue grouped for GSO
	out  []ipv4.Message // what goes to sendmmsg
}

// gsoRun is a run of queued datagrams sent as one message: [start, end)
// of the queue, one address, every segment seg bytes but the last.
type gsoRun struct {
	start, end int
	seg        int
}

const (
	gsoMax    = 32  // datagrams per GSO send
	batchMax  = 64  // messages per sendmmsg
	batchCap  = 512 // datagrams queued before WriteTo waits for the flusher
	batchSize = maxPacketSize + 64
)

func newBatchConn(c *net.UDPConn) *batchConn {
	b := &batchConn{
		UDPConn: c,
		bw:      ipv4.NewPacketConn(c),
		fill:    make([]ipv4.Message, 0, batchCap),
		spare:   make([]ipv4.Message, 0, batchCap),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		flushed: make(chan struct{}),
		gso:     true,
		out:     make([]ipv4.Message, batchCap),
	}
	for i := range b.out {
		b.out[i].Buffers = make([][]byte, 0, gsoMax)
		b.out[i].OOB = make([]byte, unix.CmsgSpace(2))
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
	if b.gso {
		b.sendGSO(out)
	} else {
		b.send(out)
	}
	b.mu.Lock()
	b.spare = out[:0] // its messages keep their buffers for the next fill
	b.mu.Unlock()
}

// send hands messages to the kernel, batchMax per system call, and
// returns how many went. A datagram the kernel refuses (an unreachable
// address) is skipped, as a failed sendto would be, so it does not lose
// the rest; a refused GSO message stops it instead (the caller falls back).
func (b *batchConn) send(ms []ipv4.Message) int {
	for i := 0; i < len(ms); {
		n, err := b.bw.WriteBatch(ms[i:i+min(len(ms)-i, batchMax)], 0)
		if err != nil || n <= 0 {
			if len(ms[i].OOB) > 0 {
				return i
			}
			n = 1
		}
		i += n
	}
	return len(ms)
}

// sendGSO sends the queue with runs to one address coalesced into single
// UDP_SEGMENT messages (the kernel walks its stack once per run). A frame's
// packets to one viewer, written back to back by its writer, are such a
// run when the packetizer cut them to one size. A kernel that refuses GSO
// turns it off for good and the rest goes out datagram by datagram.
func (b *batchConn) sendGSO(q []ipv4.Message) {
	b.runs = b.runs[:0]
	for i := 0; i < len(q); {
		r := gsoRun{start: i, end: i + 1, seg: len(q[i].Buffers[0])}
		for r.end < len(q) && r.end-r.start < gsoMax && sameAddr(q[r.end].Addr, q[i].Addr) {
			n := len(q[r.end].Buffers[0])
			if n > r.seg || len(q[r.end-1].Buffers[0]) != r.seg {
				break // only the last segment may be shorter
			}
			r.end++
		}
		b.runs = append(b.runs, r)
		i = r.end
	}
	out := b.out[:0]
	for _, r := range b.runs {
		out = out[:len(out)+1]
		m := &out[len(out)-1]
		m.Buffers = m.Buffers[:0]
		for _, x := range q[r.start:r.end] {
			m.Buffers = append(m.Buffers, x.Buffers[0])
		}
		m.Addr = q[r.start].Addr
		if r.end-r.start > 1 {
			m.OOB = m.OOB[:cap(m.OOB)]
			putSegmentCmsg(m.OOB, r.seg)
		} else {
			m.OOB = m.OOB[:0]
		}
	}
	if i := b.send(out); i < len(out) {
		// Refused: no GSO here. Send the rest one by one.
		b.gso = false
		b.send(q[b.runs[i].start:])
	}
}

// putSegmentCmsg writes a UDP_SEGMENT control message for seg-byte segments.
func putSegmentCmsg(b []byte, seg int) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(seg))
}

func sameAddr(a, b net.Addr) bool {
	x, ok1 := a.(*net.UDPAddr)
	y, ok2 := b.(*net.UDPAddr)
	return ok1 && ok2 && x.Port == y.Port && x.IP.Equal(y.IP)
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
