package turn

import (
	"net"
	"net/netip"
)

// deniedPrefixes are peer ranges a public relay must not reach by default:
// an open TURN relay into them lets any client with a credential probe the
// server's own host, its LAN, or cloud metadata endpoints (SSRF). The list
// follows the usual coturn denied-peer-ip recommendations.
var deniedPrefixes = mustPrefixes(
	// IPv4
	"0.0.0.0/8",       // "this network", includes unspecified
	"10.0.0.0/8",      // RFC 1918
	"100.64.0.0/10",   // CGNAT, RFC 6598
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, includes 169.254.169.254 metadata
	"172.16.0.0/12",   // RFC 1918
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // TEST-NET-1
	"192.88.99.0/24",  // 6to4 relay anycast
	"192.168.0.0/16",  // RFC 1918
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // TEST-NET-2
	"203.0.113.0/24",  // TEST-NET-3
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, includes broadcast
	// IPv6
	"::/96",          // unspecified, loopback, deprecated IPv4-compatible
	"64:ff9b:1::/48", // local-use NAT64
	"100::/64",       // discard-only
	"2001:db8::/32",  // documentation
	"fc00::/7",       // unique local
	"fe80::/10",      // link-local
	"fec0::/10",      // site-local (deprecated)
	"ff00::/8",       // multicast
)

// Prefixes whose addresses embed an IPv4 address in bits 96..127 (NAT64
// well-known prefix) or 16..47 (6to4); the embedded address must pass the
// IPv4 rules too, or "64:ff9b::10.0.0.1" would sneak past them.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// PeerAllowed reports whether the relay may open a permission or channel to
// addr. Anything in allow is permitted (so tests and LAN deployments can
// opt in to e.g. 127.0.0.0/8); otherwise internal, special-purpose and
// invalid addresses are refused. IPv4-mapped and IPv4-embedding IPv6 forms
// are judged by the IPv4 address they carry.
func PeerAllowed(addr netip.Addr, allow []netip.Prefix) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.WithZone("")
	if inAny(addr, allow) || inAny(addr.Unmap(), allow) {
		return true
	}
	addr = addr.Unmap()
	if inAny(addr, deniedPrefixes) {
		return false
	}
	if v4, ok := embeddedIPv4(addr); ok {
		return PeerAllowed(v4, allow)
	}
	return true
}

// embeddedIPv4 extracts the IPv4 address carried by NAT64 and 6to4
// addresses.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case nat64Prefix.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// permissionHandler adapts PeerAllowed and the self rule (selfSet) to
// pion's PermissionHandler and counts refusals for Stats.
func (s *Server) permissionHandler(client net.Addr, peer net.IP) bool {
	addr, ok := netip.AddrFromSlice(peer)
	if ok && s.self.permits(addr) && (s.self.has(addr) || PeerAllowed(addr, s.cfg.AllowPeers)) {
		return true
	}
	s.stats.permissionsDenied.Add(1)
	s.log.Debug("turn: peer refused by relay policy", "client", client.String(), "peer", peer.String())
	return false
}

// selfSet is this server's own addresses, which relayed clients may not
// reach (a relay into the server itself would let them probe its other
// services or loop traffic through TURN), except its service ports (the
// SFU's media port: a client that can only use TURN must still reach the
// SFU). Loopback addresses are not in the set: they are judged by the
// ordinary policy (denied unless AllowPeers names them, as tests do).
type selfSet struct {
	addrs map[netip.Addr]bool
	ports map[uint16]bool
}

func newSelfSet(addrs []netip.Addr, ports []uint16) *selfSet {
	s := &selfSet{addrs: map[netip.Addr]bool{}, ports: map[uint16]bool{}}
	for _, a := range addrs {
		if a = a.Unmap().WithZone(""); a.IsValid() && !a.IsLoopback() && !a.IsUnspecified() {
			s.addrs[a] = true
		}
	}
	for _, p := range ports {
		s.ports[p] = true
	}
	return s
}

// has reports whether a is one of the server's addresses, also in its
// IPv4-mapped and IPv4-embedding forms.
func (s *selfSet) has(a netip.Addr) bool {
	if len(s.addrs) == 0 {
		return false
	}
	a = a.Unmap().WithZone("")
	if s.addrs[a] {
		return true
	}
	v4, ok := embeddedIPv4(a)
	return ok && s.addrs[v4]
}

// permits reports whether a permission to a is allowed by the self rule:
// any address that is not the server's, and the server's own when it has
// service ports (the relay sockets then pass only those ports, blocks).
func (s *selfSet) permits(a netip.Addr) bool {
	return !s.has(a) || len(s.ports) > 0
}

// blocks reports whether a datagram to or from addr must be dropped: it
// is one of the server's addresses and not a service port.
func (s *selfSet) blocks(addr net.Addr) bool {
	if len(s.addrs) == 0 {
		return false
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	ap := ua.AddrPort()
	return s.has(ap.Addr()) && !s.ports[ap.Port()]
}

// ownAddrs is what the server counts as itself: cfg.OwnAddrs, the public
// IP, the listener's host when it is specific, and every interface
// address (a wildcard listener is reachable on all of them, and even a
// specific one shares the host with other services).
func ownAddrs(cfg Config) []netip.Addr {
	out := append([]netip.Addr(nil), cfg.OwnAddrs...)
	if a, err := netip.ParseAddr(cfg.PublicIP); err == nil {
		out = append(out, a)
	}
	if host, _, err := net.SplitHostPort(cfg.Listen); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			out = append(out, a)
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range addrs {
			if p, err := netip.ParsePrefix(ia.String()); err == nil {
				out = append(out, p.Addr())
			}
		}
	}
	return out
}
