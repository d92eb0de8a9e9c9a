package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// RoundTrips sends n UDP datagrams one after the other from the client's
// namespace to an echo on the lab's host address and returns the round
// trips, sorted: what the link's delay really is. Measure before adding
// loss (a lost datagram fails it after its 5 s read timeout).
func (c *Client) RoundTrips(n int) []time.Duration {
	t := c.lab.t
	t.Helper()
	echo, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.lab.HostIP, 0)))
	if err != nil {
		t.Fatalf("netlab: echo: %v", err)
	}
	defer echo.Close()
	go func() { // ends when echo closes
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	var conn *net.UDPConn
	if err := Do(c.NS, func() error {
		var err error
		conn, err = net.DialUDP("udp4", nil, echo.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatalf("netlab: %v", err)
	}
	defer conn.Close()
	rtts := make([]time.Duration, 0, n)
	buf := make([]byte, 64)
	for i := range n {
		msg := fmt.Sprintf("ping %d", i)
		start := time.Now()
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("netlab: ping: %v", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, err := conn.Read(buf)
		if err != nil || string(buf[:m]) != msg {
			t.Fatalf("netlab: echo %d: %q %v", i, buf[:m], err)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts
}
