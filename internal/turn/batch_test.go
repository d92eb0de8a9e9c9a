package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/parley/parley/internal/udpbatch"
)

func udpPair(t *testing.T) (tx, rx *net.UDPConn) {
	t.Helper()
	for _, c := range []**net.UDPConn{&tx, &rx} {
		pc := listenPeer(t, "udp4", "127.0.0.1:0")
		*c = pc.(*net.UDPConn)
		_ = (*c).SetReadBuffer(4 << 20)
	}
	return tx, rx
}

// numbered is datagram i of size bytes.
func numbered(i, size int) []byte {
	p := make([]byte, size)
	binary.BigEndian.PutUint32(p, uint32(i))
	return p
}

// expect reads the datagrams want from rx, in order.
func expect(t *testing.T, rx *net.UDPConn, want ...int) {
	t.Helper()
	buf := make([]byte, 4096)
	_ = rx.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard, not a latency limit
	for _, i := range want {
		n, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("waiting for datagram %d: %v", i, err)
		}
		if got := int(binary.BigEndian.Uint32(buf[:n])); got != i {
			t.Fatalf("got datagram %d, want %d", got, i)
		}
	}
}

// nothing checks that rx has no datagram queued (loopback delivers within
// the sending system call).
func nothing(t *testing.T, rx *net.UDPConn) {
	t.Helper()
	_ = rx.SetReadDeadline(time.Now())
	buf := make([]byte, 4096)
	if n, err := rx.Read(buf); err == nil {
		t.Fatalf("unexpected datagram %d", binary.BigEndian.Uint32(buf[:n]))
	}
}

// Queued datagrams stay queued until flush, go out in order, and a full
// queue is sent by the write that filled it; an oversized datagram goes
// straight out after what was queued before it.
func TestSendQueueOrderAndFullBatch(t *testing.T) {
	tx, rx := udpPair(t)
	q := newSendQueue(tx, udpbatch.NewConn(tx), false)
	for i := range 3 {
		n, first, err := q.writeTo(numbered(i, 100), rx.LocalAddr())
		if err != nil || n != 100 || first != (i == 0) {
			t.Fatalf("write %d: n %d first %v err %v", i, n, first, err)
		}
	}
	nothing(t, rx)
	q.flush()
	expect(t, rx, 0, 1, 2)

	var want []int
	for i := range udpbatch.MaxBatch + 2 {
		if _, _, err := q.writeTo(numbered(10+i, 100), rx.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		want = append(want, 10+i)
	}
	expect(t, rx, want[:udpbatch.MaxBatch]...) // the full batch went at once
	nothing(t, rx)
	if _, _, err := q.writeTo(numbered(200, datagramBuf+1), rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	expect(t, rx, append(want[udpbatch.MaxBatch:], 200)...)
}

// A timed queue sends without an explicit flush (the backstop for writers
// that do not flush); close sends what is queued and refuses more.
func TestSendQueueTimerAndClose(t *testing.T) {
	tx, rx := udpPair(t)
	q := newSendQueue(tx, udpbatch.NewConn(tx), true)
	if _, _, err := q.writeTo(numbered(1, 50), rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	expect(t, rx, 1)

	q = newSendQueue(tx, udpbatch.NewConn(tx), false)
	if _, _, err := q.writeTo(numbered(2, 50), rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	q.close()
	expect(t, rx, 2)
	if _, _, err := q.writeTo(numbered(3, 50), rx.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	q.flush() // harmless
	nothing(t, rx)
}

type hookCount int

func (h *hookCount) beforeRead() { *h++ }

// readBatch hands out a partial batch datagram by datagram, calls the hook
// only before it reads the socket again, truncates to the caller's
// buffer, and returns the socket's error once it is closed.
func TestReadBatchPartialAndClose(t *testing.T) {
	tx, rx := udpPair(t)
	for i := range 3 {
		if _, err := tx.WriteTo(numbered(i, 40), rx.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	var r readBatch
	var hook hookCount
	bc := udpbatch.NewConn(rx)
	p := make([]byte, 64)
	for i := range 3 {
		n, from, err := r.readFrom(bc, p, relayBatchSize, &hook)
		if err != nil || n != 40 || int(binary.BigEndian.Uint32(p)) != i || from.String() != tx.LocalAddr().String() {
			t.Fatalf("read %d: %d bytes from %v (%v)", i, n, from, err)
		}
		if hook != 1 {
			t.Fatalf("hook called %d times after reading %d of one batch", hook, i+1)
		}
	}
	if _, err := tx.WriteTo(numbered(7, 40), rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	small := make([]byte, 6)
	if n, _, err := r.readFrom(bc, small, relayBatchSize, &hook); err != nil || n != 6 || hook != 2 {
		t.Fatalf("truncated read: %d bytes, hook %d, %v", n, hook, err)
	}
	_ = rx.Close()
	if _, _, err := r.readFrom(bc, p, relayBatchSize, &hook); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
}
