// Package udpbatch hands queued UDP datagrams to the kernel in batches:
// sendmmsg (one system call for up to MaxBatch datagrams) and UDP GSO
// (back-to-back datagrams to one address sent as one message the kernel
// walks its stack with once). The SFU's media socket and the TURN relay
// queue what pion writes and flush it through a Sender.
package udpbatch

import (
	"encoding/binary"
	"net"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

const (
	// MaxBatch is the number of messages per sendmmsg.
	MaxBatch = 64
	gsoMax   = 32 // datagrams per GSO message
)

// Conn is what a Sender writes to: ipv4.PacketConn or ipv6.PacketConn.
type Conn interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// ReadWriter reads batches (recvmmsg) too.
type ReadWriter interface {
	Conn
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

// NewConn wraps c for batch writes and reads in its address family.
func NewConn(c *net.UDPConn) ReadWriter {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		return ipv6.NewPacketConn(c)
	}
	return ipv4.NewPacketConn(c)
}

// Sender sends queues of datagrams (each message's Buffers[0]) on one
// socket. It is not safe for concurrent use: its owner sends one queue at
// a time.
type Sender struct {
	c    Conn
	gso  bool     // the kernel takes UDP_SEGMENT (cleared on the first refusal)
	runs []gsoRun // the queue grouped for GSO
	out  []ipv4.Message
}

// gsoRun is a run of queued datagrams sent as one message: [start, end)
// of the queue, one address, every segment seg bytes but the last.
type gsoRun struct {
	start, end int
	seg        int
}

// NewSender returns a Sender for c that tries GSO first.
func NewSender(c Conn) *Sender {
	return &Sender{c: c, gso: true}
}

// GSO reports whether the Sender still uses UDP GSO.
func (s *Sender) GSO() bool { return s.gso }

// Send hands q to the kernel. A datagram the kernel refuses (an
// unreachable address) is skipped, as a failed sendto would be, so it
// does not lose the rest. Nothing is reordered.
func (s *Sender) Send(q []ipv4.Message) {
	if !s.gso {
		send(s.c, q)
		return
	}
	s.runs = s.runs[:0]
	for i := 0; i < len(q); {
		r := gsoRun{start: i, end: i + 1, seg: len(q[i].Buffers[0])}
		for r.end < len(q) && r.end-r.start < gsoMax && sameAddr(q[r.end].Addr, q[i].Addr) {
			n := len(q[r.end].Buffers[0])
			if n > r.seg || len(q[r.end-1].Buffers[0]) != r.seg {
				break // only the last segment may be shorter
			}
			r.end++
		}
		s.runs = append(s.runs, r)
		i = r.end
	}
	if len(s.runs) == len(q) {
		send(s.c, q) // no run to coalesce: the queue as it is
		return
	}
	out := s.messages(len(s.runs))
	for i, r := range s.runs {
		m := &out[i]
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
	if i := send(s.c, out); i < len(out) {
		// Refused: no GSO here. Send the rest one by one.
		s.gso = false
		send(s.c, q[s.runs[i].start:])
	}
	for i := range out {
		clear(out[i].Buffers) // drop references to the queue's buffers
		out[i].Addr = nil
	}
}

// messages returns n reusable GSO messages.
func (s *Sender) messages(n int) []ipv4.Message {
	for len(s.out) < n {
		s.out = append(s.out, ipv4.Message{
			Buffers: make([][]byte, 0, gsoMax),
			OOB:     make([]byte, unix.CmsgSpace(2)),
		})
	}
	return s.out[:n]
}

// send hands messages to the kernel, MaxBatch per system call, and returns
// how many went. A refused plain datagram is skipped; a refused GSO message
// stops it instead (the caller falls back).
func send(c Conn, ms []ipv4.Message) int {
	for i := 0; i < len(ms); {
		n, err := c.WriteBatch(ms[i:i+min(len(ms)-i, MaxBatch)], 0)
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
