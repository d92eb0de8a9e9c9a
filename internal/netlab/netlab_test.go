package netlab

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// udpFrom opens a UDP socket inside the client's namespace.
func udpFrom(t *testing.T, c *Client) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := Do(c.NS, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// tcpFrom connects to addr from inside the client's namespace.
func tcpFrom(t *testing.T, c *Client, addr string) net.Conn {
	t.Helper()
	var conn net.Conn
	if err := Do(c.NS, func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", addr, 10*time.Second)
		return err
	}); err != nil {
		t.Fatalf("tcp from %s: %v", c.NS, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func hostUDP(t *testing.T, l *Lab) *net.UDPConn {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.HostIP, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// readFrom waits (bounded) for one datagram.
func readFrom(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1500)
	n, from, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

func send(t *testing.T, c *net.UDPConn, to netip.AddrPort, msg string) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// TestNATBehaviour checks what the kernel's NAT really does for each kind:
// the mapping (same public port towards two destinations or not) and the
// filtering (is a packet from a stranger let in).
func TestNATBehaviour(t *testing.T) {
	l := New(t)
	for _, tc := range []struct {
		nat          NAT
		sameMapping  bool
		strangerGets bool
	}{
		{FullCone, true, true},
		{PortRestricted, true, false},
		{Symmetric, false, false},
	} {
		t.Run(tc.nat.String(), func(t *testing.T) {
			c := l.AddClient(tc.nat)
			cl := udpFrom(t, c)
			a, b, stranger := hostUDP(t, l), hostUDP(t, l), hostUDP(t, l)
			send(t, cl, a.LocalAddr().(*net.UDPAddr).AddrPort(), "to-a")
			_, viaA := readFrom(t, a)
			send(t, cl, b.LocalAddr().(*net.UDPAddr).AddrPort(), "to-b")
			_, viaB := readFrom(t, b)
			if viaA.Addr() != c.WANIP || viaB.Addr() != c.WANIP {
				t.Fatalf("source seen %v / %v, want the router's %v", viaA, viaB, c.WANIP)
			}
			if same := viaA == viaB; same != tc.sameMapping {
				t.Fatalf("mapping towards two destinations: %v and %v (same=%v, want %v)", viaA, viaB, same, tc.sameMapping)
			}
			// The stranger writes first, then a, which the client did
			// contact: on the same path a's packet cannot overtake, so
			// the first packet the client reads says whether the
			// stranger's got in — no timeout needed for the negative.
			send(t, stranger, viaA, "stranger")
			send(t, a, viaA, "from-a")
			msg, _ := readFrom(t, cl)
			if got := string(msg) == "stranger"; got != tc.strangerGets {
				t.Fatalf("first packet in is %q; stranger let in = %v, want %v", msg, got, tc.strangerGets)
			}
		})
	}
}

// TestBlockUDP: UDP out of a blocked client is dropped while TCP passes.
func TestBlockUDP(t *testing.T) {
	l := New(t)
	c := l.AddClient(PortRestricted)
	c.BlockUDP()
	u := hostUDP(t, l)
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(l.HostIP, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl := udpFrom(t, c)
	send(t, cl, u.LocalAddr().(*net.UDPAddr).AddrPort(), "udp")
	tc := tcpFrom(t, c, ln.Addr().String())
	if _, err := tc.Write([]byte("tcp")); err != nil {
		t.Fatal(err)
	}
	in, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := in.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	// The UDP datagram was sent before the TCP connection was opened: had
	// it passed, it would be waiting now.
	_ = u.SetReadDeadline(time.Now())
	if _, _, err := u.ReadFromUDP(make([]byte, 64)); err == nil {
		t.Fatal("a UDP datagram got through a UDP-blocked router")
	} else if ne := (net.Error)(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatal(err)
	}
}

// TestLoss: with 20 % random loss about 80 % of 500 datagrams arrive.
func TestLoss(t *testing.T) {
	l := New(t)
	c := l.AddClient(PortRestricted)
	c.Loss(0.2)
	u := hostUDP(t, l)
	_ = u.SetReadBuffer(4 << 20)
	cl := udpFrom(t, c)
	to := u.LocalAddr().(*net.UDPAddr).AddrPort()
	const n = 500
	got := make(chan int, 1)
	go func() {
		count, buf := 0, make([]byte, 64)
		for {
			_ = u.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, _, err := u.ReadFromUDP(buf)
			if err != nil {
				got <- -1
				return
			}
			if bytes.Equal(buf[:m], []byte("end")) {
				got <- count
				return
			}
			count++
		}
	}()
	for range n {
		send(t, cl, to, "x")
	}
	c.lab.nsMust(c.Router, "iptables", "-F", "FORWARD") // the end marker must arrive
	send(t, cl, to, "end")
	count := <-got
	t.Logf("%d of %d datagrams arrived through 20 %% loss", count, n)
	// mean 400, standard deviation ~9: six sigma either side
	if count < 345 || count > 455 {
		t.Fatalf("%d of %d arrived, want about 400", count, n)
	}
}

// TestDelay measures round trips through a link with 40 ms ± 10 ms each
// way: every one at least 60 ms, their median near 80 ms.
func TestDelay(t *testing.T) {
	l := New(t)
	c := l.AddClient(PortRestricted, Delay(40*time.Millisecond, 10*time.Millisecond))
	const n = 21
	rtts := c.RoundTrips(n)
	t.Logf("round trips through 40±10 ms each way: min %v, median %v, max %v", rtts[0], rtts[n/2], rtts[n-1])
	if rtts[0] < 60*time.Millisecond || rtts[n/2] < 70*time.Millisecond {
		t.Fatalf("round trips %v: the link does not delay as asked", rtts)
	}
}

// TestRateLimit: 100 KB over TCP through a 400 kbit/s cap take at least
// the ~1.9 s the cap allows (a lower bound only: a busy machine is slower).
func TestRateLimit(t *testing.T) {
	l := New(t)
	c := l.AddClient(PortRestricted)
	c.RateLimit(400)
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(l.HostIP, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn := tcpFrom(t, c, ln.Addr().String())
	in, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	const size = 100_000
	go func() { _, _ = conn.Write(make([]byte, size)) }() // ends when done or when conn closes
	_ = in.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := in.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for got := n; got < size; got += n {
		if n, err = in.Read(buf); err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
	}
	took := time.Since(start)
	t.Logf("100 KB through a 400 kbit/s cap in %v (%.0f kbit/s)", took, size*8/took.Seconds()/1000)
	if took < 1500*time.Millisecond {
		t.Fatalf("100 KB in %v: faster than the cap allows", took)
	}
}

// TestForward reaches a listener on a client namespace's loopback from
// the test's own namespace.
func TestForward(t *testing.T) {
	l := New(t)
	c := l.AddClient(PortRestricted)
	var ln net.Listener
	if err := Do(c.NS, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // echoes one connection; ends when it closes
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(conn, conn)
	}()
	f, err := Forward(c.NS, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	conn, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("through the namespace")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len("through the namespace"))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "through the namespace" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// TestCut: nothing passes during an outage, and traffic flows again after.
func TestCut(t *testing.T) {
	l := New(t)
	c := l.AddClient(PortRestricted)
	u := hostUDP(t, l)
	cl := udpFrom(t, c)
	to := u.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Cut()
	send(t, cl, to, "during")
	c.Mend()
	send(t, cl, to, "after")
	// Same path, same order: had "during" passed, it would come first.
	if msg, _ := readFrom(t, u); string(msg) != "after" {
		t.Fatalf("first datagram through is %q, want the one sent after Mend", msg)
	}
}

// TestRenumber: after a move to another address, a client's new sockets
// reach the host through its NAT again (on either kind of link).
func TestRenumber(t *testing.T) {
	l := New(t)
	for _, c := range []*Client{l.AddClient(PortRestricted), l.AddClient(PortRestricted, Delay(time.Millisecond, 0))} {
		old := c.IP
		c.Renumber()
		if c.IP == old {
			t.Fatalf("address unchanged: %v", c.IP)
		}
		u := hostUDP(t, l)
		send(t, udpFrom(t, c), u.LocalAddr().(*net.UDPAddr).AddrPort(), "moved")
		if msg, from := readFrom(t, u); string(msg) != "moved" || from.Addr() != c.WANIP {
			t.Fatalf("got %q from %v, want \"moved\" from %v", msg, from, c.WANIP)
		}
	}
}
