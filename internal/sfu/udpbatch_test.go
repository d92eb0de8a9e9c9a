package sfu

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// Datagrams written concurrently through a batchConn all arrive whole,
// each writer's in its order (runs of one size with a shorter last one
// exercise GSO), and Close sends what was queued.
func TestBatchConnDeliversEverything(t *testing.T) {
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(8 << 20)
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := newBatchConn(tx)
	const writers, each = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 1200)
			for i := range each {
				binary.BigEndian.PutUint16(p[0:], uint16(w))
				binary.BigEndian.PutUint32(p[2:], uint32(i))
				if n, err := b.WriteTo(p[:sizeOf(i)], rx.LocalAddr()); err != nil || n != sizeOf(i) {
					t.Errorf("WriteTo: %d, %v", n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]uint32, writers)
	buf := make([]byte, 2000)
	_ = rx.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard, not a latency limit
	for got := 0; got < writers*each; got++ {
		n, _, err := rx.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", got, err)
		}
		w, i := binary.BigEndian.Uint16(buf[0:]), binary.BigEndian.Uint32(buf[2:])
		if int(w) >= writers || i != next[w] || n != sizeOf(int(i)) {
			t.Fatalf("datagram %d: writer %d number %d (want %d), %d bytes", got, w, i, next[w], n)
		}
		next[w]++
	}
	t.Logf("GSO used: %v", b.snd.GSO())
}

// sizeOf is the size of a writer's i-th datagram: frames of three, the
// last one shorter.
func sizeOf(i int) int {
	if i%3 == 2 {
		return 700
	}
	return 1200
}
