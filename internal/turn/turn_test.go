package turn

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/parley/parley/internal/auth"
)

func TestSTUNBinding(t *testing.T) {
	s := startServer(t, nil)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			c := dialClient(t, s, transport, cred("alice", time.Hour))
			mapped, err := c.SendBindingRequest()
			if err != nil {
				t.Fatalf("binding: %v", err)
			}
			ip, _, _ := net.SplitHostPort(mapped.String())
			if ip != "127.0.0.1" {
				t.Fatalf("mapped address %v, want 127.0.0.1:*", mapped)
			}
		})
	}
}

func TestRelayBothDirections(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s := startServer(t, nil)
			c := dialClient(t, s, transport, cred("alice", time.Hour))
			relay, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			if ip := relay.LocalAddr().(*net.UDPAddr).IP.String(); ip != "127.0.0.1" {
				t.Fatalf("relay address %v, want 127.0.0.1", relay.LocalAddr())
			}
			peer := listenPeer(t, "udp4", "127.0.0.1:0")
			exchange(t, relay, peer, 5)
			st := s.Stats()
			if st.Allocations != 1 || st.AllocationsTotal != 1 || st.RelayedPackets < 10 || st.RelayedBytes == 0 {
				t.Fatalf("stats after relaying: %+v", st)
			}
		})
	}
}

// exchange sends n messages each way between a TURN relay and a peer. The
// first goes as a Send indication while pion's client binds a channel; the
// rest use ChannelData.
func exchange(t *testing.T, relay, peer net.PacketConn, n int) {
	t.Helper()
	for i := range n {
		msg := "to-peer-" + string(rune('a'+i))
		if _, err := relay.WriteTo([]byte(msg), peer.LocalAddr()); err != nil {
			t.Fatalf("relay write: %v", err)
		}
		got, from := readWithin(t, peer, 2*time.Second)
		if got != msg || from.String() != relay.LocalAddr().String() {
			t.Fatalf("peer got %q from %v, want %q from %v", got, from, msg, relay.LocalAddr())
		}
		back := "to-client-" + string(rune('a'+i))
		if _, err := peer.WriteTo([]byte(back), from); err != nil {
			t.Fatal(err)
		}
		got, from = readWithin(t, relay, 2*time.Second)
		if got != back || from.String() != peer.LocalAddr().String() {
			t.Fatalf("client got %q from %v, want %q from %v", got, from, back, peer.LocalAddr())
		}
		time.Sleep(20 * time.Millisecond) // let the channel binding land
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	s := startServer(t, nil)
	bad := cred("alice", time.Hour)
	bad.Password = auth.TURNPassword([]byte("other-secret"), bad.Username)
	c := dialClient(t, s, "udp", bad)
	if _, err := c.Allocate(); err == nil {
		t.Fatal("allocate with wrong password succeeded")
	}
	if st := s.Stats(); st.AuthFailures == 0 || st.AllocationsTotal != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestExpiredCredentialRefused(t *testing.T) {
	s := startServer(t, nil)
	c := dialClient(t, s, "udp", cred("alice", -time.Minute))
	if _, err := c.Allocate(); err == nil {
		t.Fatal("allocate with expired credential succeeded")
	}
	if st := s.Stats(); st.AuthFailures == 0 || st.AllocationsTotal != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestPermissionPolicy(t *testing.T) {
	t.Run("loopback not allowed by default", func(t *testing.T) {
		s := startServer(t, func(c *Config) { c.AllowPeers = nil })
		c := dialClient(t, s, "udp", cred("alice", time.Hour))
		if _, err := c.Allocate(); err != nil {
			t.Fatal(err)
		}
		if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
			t.Fatal("permission to 127.0.0.1 granted without allow-list")
		}
		if s.Stats().PermissionsDenied != 1 {
			t.Fatalf("stats: %+v", s.Stats())
		}
	})
	t.Run("internal targets refused despite loopback allow", func(t *testing.T) {
		s := startServer(t, nil)
		c := dialClient(t, s, "udp", cred("alice", time.Hour))
		if _, err := c.Allocate(); err != nil {
			t.Fatal(err)
		}
		for _, ip := range []string{"10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1"} {
			addr := &net.UDPAddr{IP: net.ParseIP(ip), Port: 9}
			if err := c.CreatePermission(addr); err == nil {
				t.Fatalf("permission to %s granted", ip)
			}
		}
		for _, ip := range []string{"10.0.0.1", "169.254.169.254"} {
			peer := netip.AddrPortFrom(netip.MustParseAddr(ip), 9)
			if class := rawChannelBind(t, s, cred("bob", time.Hour), peer); class != stun.ClassErrorResponse {
				t.Fatalf("channel bind to %s: class %v, want error", ip, class)
			}
		}
		if got := s.Stats().PermissionsDenied; got != 5 {
			t.Fatalf("PermissionsDenied = %d, want 5", got)
		}
	})
}

func TestQuota(t *testing.T) {
	s := startServer(t, nil)
	relays := make([]net.PacketConn, 0, 10)
	for i := range 10 {
		r, err := dialClient(t, s, "udp", cred("alice", time.Hour)).Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
		relays = append(relays, r)
	}
	// A fresh credential for the same user shares the quota.
	if _, err := dialClient(t, s, "udp", cred("alice", 2*time.Hour)).Allocate(); err == nil {
		t.Fatal("11th allocation for alice succeeded")
	}
	if _, err := dialClient(t, s, "tcp", cred("bob", time.Hour)).Allocate(); err != nil {
		t.Fatalf("bob: %v", err)
	}
	if st := s.Stats(); st.QuotaRejections != 1 || st.Allocations != 11 {
		t.Fatalf("stats: %+v", st)
	}
	// Releasing one allocation frees a slot.
	_ = relays[0].Close()
	waitFor(t, "deallocation", func() bool { return s.Stats().Allocations == 10 })
	if _, err := dialClient(t, s, "udp", cred("alice", time.Hour)).Allocate(); err != nil {
		t.Fatalf("alice after release: %v", err)
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	s := startServer(t, nil)
	var relayPorts []int
	for _, transport := range []string{"udp", "tcp"} {
		r, err := dialClient(t, s, transport, cred("alice", time.Hour)).Allocate()
		if err != nil {
			t.Fatal(err)
		}
		relayPorts = append(relayPorts, r.LocalAddr().(*net.UDPAddr).Port)
	}
	port := s.UDPAddr().(*net.UDPAddr).Port
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := s.Stats(); st.Allocations != 0 {
		t.Fatalf("allocations after Close: %+v", st)
	}
	for _, p := range append(relayPorts, port) {
		u, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", itoa(p)))
		if err != nil {
			t.Fatalf("UDP port %d still taken: %v", p, err)
		}
		_ = u.Close()
	}
	l, err := net.Listen("tcp4", s.TCPAddr().String())
	if err != nil {
		t.Fatalf("TCP port still taken: %v", err)
	}
	_ = l.Close()
	// A new server can take the same address.
	s2 := startServer(t, func(c *Config) { c.Listen = s.UDPAddr().String() })
	if s2.UDPAddr().String() != s.UDPAddr().String() {
		t.Fatalf("rebound at %v, want %v", s2.UDPAddr(), s.UDPAddr())
	}
}

func TestPortTaken(t *testing.T) {
	s := startServer(t, nil)
	if s2, err := New(Config{Listen: s.UDPAddr().String(), Secret: testSecret, Logger: testLogger()}); err == nil {
		_ = s2.Close()
		t.Fatal("second server on the same port started")
	}
}

func TestIPv6(t *testing.T) {
	if l, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		_ = l.Close()
	}
	s := startServer(t, func(c *Config) {
		c.Listen = "[::1]:0"
		c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("::1/128")}
	})
	conn := listenPeer(t, "udp6", "[::1]:0")
	c := newClientV6(t, conn, s.UDPAddr().String(), cred("alice", time.Hour))
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if ip := relay.LocalAddr().(*net.UDPAddr).IP.String(); ip != "::1" {
		t.Fatalf("relay %v, want [::1]", relay.LocalAddr())
	}
	exchange(t, relay, listenPeer(t, "udp6", "[::1]:0"), 2)
}

// TestWildcardFamilies checks that ":0" serves both families on one port
// and gives each client a relay address of its own family. No data is
// relayed: the IPv6 relay address is a real interface address.
func TestWildcardFamilies(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Listen = ":0"; c.PublicIP = "127.0.0.1" })
	port := itoa(s.UDPAddr().(*net.UDPAddr).Port)
	r4, err := newClient(t, listenPeer(t, "udp4", "127.0.0.1:0"), "127.0.0.1:"+port, cred("a", time.Hour)).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if ip := r4.LocalAddr().(*net.UDPAddr).IP; ip.String() != "127.0.0.1" {
		t.Fatalf("v4 relay %v", ip)
	}
	c6, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { _ = c6.Close() })
	r6, err := newClientV6(t, c6, "[::1]:"+port, cred("a", time.Hour)).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if ip := r6.LocalAddr().(*net.UDPAddr).IP; ip.To4() != nil {
		t.Fatalf("v6 client got IPv4 relay %v", ip)
	}
}

func TestICEServers(t *testing.T) {
	s := startServer(t, nil)
	port := itoa(s.UDPAddr().(*net.UDPAddr).Port)
	cases := []struct{ host, want string }{
		{"example.org", "example.org:" + port},
		{"example.org:8443", "example.org:" + port},
		{"[2001:db8::1]:8443", "[2001:db8::1]:" + port},
		{"2001:db8::1", "[2001:db8::1]:" + port},
		{"", "127.0.0.1:" + port},
	}
	for _, tc := range cases {
		got := s.ICEServers(tc.host, "carol", time.Hour)
		if len(got) != 2 || got[0].URLs[0] != "stun:"+tc.want ||
			strings.Join(got[1].URLs, " ") != "turn:"+tc.want+"?transport=udp turn:"+tc.want+"?transport=tcp" {
			t.Fatalf("ICEServers(%q) = %+v", tc.host, got)
		}
		exp, user, ok := auth.TURNExpiry(got[1].Username)
		if !ok || user != "carol" || time.Until(exp) < 59*time.Minute ||
			got[1].Credential != auth.TURNPassword(testSecret, got[1].Username) {
			t.Fatalf("bad credential %+v", got[1])
		}
	}
	pub := startServer(t, func(c *Config) { c.PublicIP = "2001:db8::7" })
	if u := pub.ICEServers("example.org", "x", time.Minute)[0].URLs[0]; !strings.HasPrefix(u, "stun:[2001:db8::7]:") {
		t.Fatalf("with PublicIP: %s", u)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
