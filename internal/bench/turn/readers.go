package turn

import (
	"bytes"

	"golang.org/x/net/ipv4"

	"github.com/parley/parley/internal/udpbatch"
)

// startReaders runs the peer (sink or echo) and, for echo runs, one reader
// per client socket. They end when close() closes their sockets.
func (r *run) startReaders() {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.peerLoop()
	}()
	if !r.opt.Echo {
		return
	}
	for _, a := range r.allocs {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.clientLoop(udpbatch.NewConn(a.conn))
		}()
	}
}

func newMessages() []ipv4.Message {
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	return ms
}

// peerLoop counts datagrams carrying magic and, in echo mode, sends each
// straight back to the relay address it came from.
func (r *run) peerLoop() {
	c := udpbatch.NewConn(r.peer)
	in := newMessages()
	out := make([]ipv4.Message, batch)
	for i := range out {
		out[i].Buffers = make([][]byte, 1)
	}
	for {
		n, err := c.ReadBatch(in, 0)
		if err != nil {
			return
		}
		k := 0
		for _, m := range in[:n] {
			p := m.Buffers[0][:m.N]
			if !bytes.HasPrefix(p, magic[:]) {
				continue
			}
			out[k].Buffers[0], out[k].Addr = p, m.Addr
			k++
		}
		r.peerRecv.Add(uint64(k))
		if r.opt.Echo && k > 0 {
			if _, err := writeAll(c, out[:k]); err != nil {
				return
			}
		}
	}
}

// clientLoop counts ChannelData echoes arriving at one client.
func (r *run) clientLoop(c udpbatch.ReadWriter) {
	in := newMessages()
	for {
		n, err := c.ReadBatch(in, 0)
		if err != nil {
			return
		}
		k := 0
		for _, m := range in[:n] {
			p := m.Buffers[0][:m.N]
			if len(p) >= 8 && p[0] == channelNumber>>8 && p[1] == channelNumber&0xff &&
				bytes.Equal(p[4:8], magic[:]) {
				k++
			}
		}
		r.clientRcv.Add(uint64(k))
	}
}
