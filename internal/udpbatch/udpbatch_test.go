package udpbatch

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A queue to two receivers, with runs of one size (a shorter last one),
// a datagram the kernel refuses in the middle and more datagrams than one
// sendmmsg takes, arrives whole and in order at each receiver, with GSO
// and without.
func TestSenderDeliversInOrder(t *testing.T) {
	for _, gso := range []bool{true, false} {
		rx := []*net.UDPConn{listen(t), listen(t)}
		tx := listen(t)
		s := NewSender(NewConn(tx))
		s.gso = gso
		const total = 3*MaxBatch + 5
		var q []ipv4.Message
		want := make([][]int, len(rx))
		for i := range total {
			r := (i / 7) % 2 // runs of 7 to one receiver
			size := 300
			if i%7 == 6 {
				size = 120
			}
			p := make([]byte, size)
			binary.BigEndian.PutUint32(p, uint32(i))
			q = append(q, ipv4.Message{Buffers: [][]byte{p}, Addr: rx[r].LocalAddr()})
			want[r] = append(want[r], i)
			if i == 100 { // port 0: refused with EINVAL
				q = append(q, ipv4.Message{Buffers: [][]byte{p}, Addr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}})
			}
		}
		s.Send(q)
		buf := make([]byte, 2000)
		for r, c := range rx {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard
			for _, i := range want[r] {
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("gso %v receiver %d: waiting for %d: %v", gso, r, i, err)
				}
				if got := int(binary.BigEndian.Uint32(buf)); got != i || (n != 300 && n != 120) {
					t.Fatalf("gso %v receiver %d: got datagram %d (%d bytes), want %d", gso, r, got, n, i)
				}
			}
		}
		t.Logf("asked GSO %v, used %v", gso, s.GSO())
	}
}
