package turn

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchSize is how many datagrams one recvmmsg may return.
const batchSize = 32

// batchReader serves ReadFrom from recvmmsg batches. pion reads a listener
// socket with one ReadFrom (one recvfrom syscall) per datagram; on this
// class of machine the syscall and the goroutine park/unpark around it
// cost more than TURN processing itself, so amortising them over a batch
// is the cheapest CPU win. Only pion's single read loop per socket calls
// ReadFrom; WriteTo and the rest pass through to the socket.
type batchReader struct {
	*net.UDPConn
	pc    batchConn
	ms    []ipv4.Message
	n, i  int
	dirty []*relayConn // relay sockets with queued writes, see relayConn.WriteTo
}

type batchConn interface {
	ReadBatch([]ipv4.Message, int) (int, error)
	WriteBatch([]ipv4.Message, int) (int, error)
}

func newBatchConn(c *net.UDPConn) batchConn {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		return ipv6.NewPacketConn(c)
	}
	return ipv4.NewPacketConn(c)
}

func newBatchReader(c *net.UDPConn) *batchReader {
	b := &batchReader{UDPConn: c, pc: newBatchConn(c), ms: make([]ipv4.Message, batchSize)}
	for i := range b.ms {
		b.ms[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	return b
}

// ReadFrom returns the next buffered datagram, refilling the batch with
// one recvmmsg when it is used up. Before that (possibly blocking) read it
// sends the relay writes queued while handling the previous batch, so a
// queued datagram waits at most for one batch to be processed. A datagram
// longer than p is truncated to len(p), which pion treats as over-MTU and
// drops.
func (b *batchReader) ReadFrom(p []byte) (int, net.Addr, error) {
	if b.i >= b.n {
		b.flush()
		n, err := b.pc.ReadBatch(b.ms, 0)
		if err != nil {
			return 0, nil, err
		}
		b.n, b.i = n, 0
	}
	m := &b.ms[b.i]
	b.i++
	return copy(p, m.Buffers[0][:m.N]), m.Addr, nil
}

// flush sends every queued relay write.
func (b *batchReader) flush() {
	for i, c := range b.dirty {
		c.flush()
		b.dirty[i] = nil
	}
	b.dirty = b.dirty[:0]
}
