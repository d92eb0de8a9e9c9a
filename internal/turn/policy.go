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

// permissionHandler adapts PeerAllowed to pion's PermissionHandler and
// counts refusals for Stats.
func (s *Server) permissionHandler(client net.Addr, peer net.IP) bool {
	addr, ok := netip.AddrFromSlice(peer)
	if ok && PeerAllowed(addr, s.cfg.AllowPeers) {
		return true
	}
	s.stats.permissionsDenied.Add(1)
	s.log.Debug("turn: peer refused by relay policy", "client", client.String(), "peer", peer.String())
	return false
}
