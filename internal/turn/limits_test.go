package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// Row 6 of issue #10: three room joins gave three usernames and three
// times the per-user quota. Allocations are also counted per client
// address, across usernames.
func TestQuotaPerClientAddress(t *testing.T) {
	s := startServer(t, func(c *Config) { c.PerIP = 3 })
	var relays []net.PacketConn
	for _, user := range []string{"ann", "bob", "cat"} {
		r, err := dialClient(t, s, "udp", cred(user, time.Hour)).Allocate()
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		relays = append(relays, r)
	}
	for _, transport := range []string{"udp", "tcp"} {
		if _, err := dialClient(t, s, transport, cred("dan", time.Hour)).Allocate(); err == nil {
			t.Fatalf("a 4th allocation from one address over %s, with a 4th username, succeeded", transport)
		}
	}
	if st := s.Stats(); st.QuotaRejections != 2 || st.Allocations != 3 {
		t.Fatalf("stats: %+v", st)
	}
	if n := s.quota.perAddress(netip.MustParseAddr("127.0.0.1")); n != 3 {
		t.Fatalf("127.0.0.1 holds %d allocations, want 3", n)
	}
	// Releasing one frees the address's slot.
	_ = relays[0].Close()
	waitFor(t, "deallocation", func() bool { return s.Stats().Allocations == 2 })
	if _, err := dialClient(t, s, "udp", cred("dan", time.Hour)).Allocate(); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// The server's own addresses are refused as relay peers even when
// AllowPeers covers them: the public IP, the configured own addresses and
// every interface address. Loopback stays AllowPeers' decision (tests).
func TestOwnAddressesRefused(t *testing.T) {
	own := netip.MustParseAddr("198.51.100.7")
	public := netip.MustParseAddr("203.0.113.9")
	var iface netip.Addr
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() && p.Addr().Is4() {
				iface = p.Addr()
				break
			}
		}
	}
	s := startServer(t, func(c *Config) {
		c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
		c.OwnAddrs = []netip.Addr{own}
		c.PublicIP = public.String()
	})
	c := dialClient(t, s, "udp", cred("alice", time.Hour))
	if _, err := c.Allocate(); err != nil {
		t.Fatal(err)
	}
	// Permissions are a request to the TURN server: nothing is sent to
	// these peers.
	refused := []netip.Addr{own, public, netip.MustParseAddr("::ffff:198.51.100.7"), netip.MustParseAddr("64:ff9b::cb00:7109")}
	if iface.IsValid() {
		refused = append(refused, iface)
	}
	for _, a := range refused {
		if err := c.CreatePermission(&net.UDPAddr{IP: a.AsSlice(), Port: 9}); err == nil {
			t.Errorf("permission to the server's own %s granted", a)
		}
	}
	for _, a := range []string{"198.51.100.8", "127.0.0.1"} {
		if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP(a), Port: 9}); err != nil {
			t.Errorf("permission to %s (allowed, not the server's): %v", a, err)
		}
	}
}

// With service ports (the SFU's media port), a relayed client reaches the
// server's own addresses on those ports only: the relay socket drops
// datagrams to and from any other port.
func TestOwnAddressesServicePorts(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	service, other := listenPeer(t, "udp4", "127.0.0.1:0"), listenPeer(t, "udp4", "127.0.0.1:0")
	servicePort := uint16(service.LocalAddr().(*net.UDPAddr).Port)
	// newSelfSet leaves loopback to AllowPeers; this set is built by hand
	// so that loopback plays the server's own address.
	self := &selfSet{addrs: map[netip.Addr]bool{lo: true}, ports: map[uint16]bool{servicePort: true}}
	if !self.permits(lo) || !self.has(netip.MustParseAddr("::ffff:127.0.0.1")) {
		t.Fatal("a permission to an own address with service ports is refused")
	}
	if (&selfSet{addrs: self.addrs}).permits(lo) {
		t.Fatal("a permission to an own address without service ports is granted")
	}
	pc := listenPeer(t, "udp4", "127.0.0.1:0")
	relay := newRelayConn(pc.(*net.UDPConn), &counters{}, self, nil)
	for _, to := range []net.PacketConn{other, service} {
		if _, err := relay.WriteTo([]byte("hi"), to.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := readWithin(t, service, 2*time.Second); got != "hi" {
		t.Fatalf("service port got %q", got)
	}
	// The other port got nothing: what it sends back is dropped too, and
	// the service port's answer is the first datagram the relay reads.
	if _, err := other.WriteTo([]byte("from other"), pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := service.WriteTo([]byte("from service"), pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := relay.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "from service" || from.String() != service.LocalAddr().String() {
		t.Fatalf("relay read %q from %v (%v), want the service port's datagram", buf[:n], from, err)
	}
	// Loopback delivers within sendto: had the relay sent to the other
	// port, the datagram would be queued there already.
	_ = other.SetReadDeadline(time.Now())
	if n, _, err := other.ReadFrom(buf); err == nil {
		t.Fatalf("the other port received %q through the relay", buf[:n])
	}
}
