package udpbatch

import (
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackFanoutFloor is the kernel's share of the SFU fan-out
// benchmark's sending (`parley bench fanout`, 300 viewers), measured
// without Parley, pion or SRTP: one thread sends what the server sends
// each 1/30 s, to 300 loopback sockets, through this package's Sender.
// Per viewer that is one video frame of four packets (1,100 bytes, the
// last 700: one GSO message) and two Opus packets of 150 and 151 bytes
// (an audio packet goes alone: in the server they are 20 ms apart). That
// is the stream's shape (≈ 126 video and 50 audio packets a second per
// viewer) with the best batching the server could reach: a whole round
// of 1,800 datagrams per Send.
//
// The metric is the sending thread's CPU time (getrusage RUSAGE_THREAD)
// per datagram. This kernel has no IRQ time accounting, so the loopback
// delivery into the receivers' sockets, done in the sender's system call,
// is counted there as it is in the server's figure. Receivers drain their
// sockets on other goroutines, and the sender waits (sleeping) for them
// to catch up after each round, so nothing is dropped and the waiting
// costs the sender next to nothing.
//
//	go test -run '^$' -bench LoopbackFanoutFloor -benchtime 200x -count 3 ./internal/udpbatch
func BenchmarkLoopbackFanoutFloor(b *testing.B) {
	for _, gso := range []bool{true, false} {
		name := "gso"
		if !gso {
			name = "sendmmsg"
		}
		b.Run(name, func(b *testing.B) { fanoutFloor(b, 300, gso) })
	}
}

func fanoutFloor(b *testing.B, viewers int, gso bool) {
	sizes := []int{1100, 1100, 1100, 700, 150, 151}
	perRound := viewers * len(sizes)

	var received atomic.Int64
	var wg sync.WaitGroup
	rx := make([]*net.UDPConn, viewers)
	for i := range rx {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadBuffer(1 << 20)
		rx[i] = c
		wg.Add(1)
		go func() { // ends when the socket is closed below
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
				received.Add(1)
			}
		}()
	}
	defer func() {
		for _, c := range rx {
			_ = c.Close()
		}
		wg.Wait()
	}()
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	_ = tx.SetWriteBuffer(4 << 20)
	s := NewSender(NewConn(tx))
	s.gso = gso

	q := make([]ipv4.Message, 0, perRound)
	for _, c := range rx {
		for _, n := range sizes {
			q = append(q, ipv4.Message{Buffers: [][]byte{make([]byte, n)}, Addr: c.LocalAddr()})
		}
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var sent int64
	wait := func() { // for the receivers, sleeping; gives up after 2 s without progress
		last, since := received.Load(), time.Now()
		for n := received.Load(); n < sent; n = received.Load() {
			if n != last {
				last, since = n, time.Now()
			} else if time.Since(since) > 2*time.Second {
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	cpu0 := threadCPU(b)
	for b.Loop() {
		s.Send(q)
		sent += int64(perRound)
		wait()
	}
	cpu := threadCPU(b) - cpu0
	b.ReportMetric(float64(cpu)/float64(sent)/1e3, "sender-µs/pkt")
	b.ReportMetric(100*float64(sent-received.Load())/float64(sent), "lost-%")
}

// threadCPU is the calling thread's user + system time, in ns.
func threadCPU(b *testing.B) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
