// Package clientip tells who a request or connection comes from, for
// per-client limits. Behind a reverse proxy every request comes from the
// proxy, so the client is read from X-Forwarded-For or Forwarded, but only
// when the connection comes from a trusted proxy: anyone else could write
// those headers to dodge their limits or frame another address.
package clientip

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds a request's client address.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a resolver that believes forwarding headers only from
// connections whose address is inside trusted.
func New(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: append([]netip.Prefix(nil), trusted...)}
}

// ParsePrefixes parses "CIDR" strings (already validated by config).
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	if r == nil {
		return false
	}
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Request returns the client address of req: the connection's peer, or,
// when that peer is a trusted proxy, the right-most address in the
// forwarding headers that is not itself a trusted proxy (the left part of
// X-Forwarded-For is whatever the client chose to send).
func (r *Resolver) Request(req *http.Request) netip.Addr {
	peer := parseHostPort(req.RemoteAddr)
	if !r.isTrusted(peer) {
		return peer
	}
	hops := forwarded(req.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		a := hops[i]
		if !a.IsValid() {
			return peer // garbled chain: do not guess
		}
		if !r.isTrusted(a) {
			return a
		}
	}
	return peer
}

// forwarded lists the addresses in Forwarded (RFC 7239 for=) or, when that
// is absent, X-Forwarded-For, in order. An entry that is not an address
// (an obfuscated "_hidden" or "unknown") is the invalid Addr.
func forwarded(h http.Header) []netip.Addr {
	var out []netip.Addr
	if fw := h.Values("Forwarded"); len(fw) > 0 {
		for _, line := range fw {
			for _, elem := range strings.Split(line, ",") {
				for _, pair := range strings.Split(elem, ";") {
					k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
					if !ok || !strings.EqualFold(k, "for") {
						continue
					}
					out = append(out, parseHostPort(strings.Trim(v, `"`)))
				}
			}
		}
		return out
	}
	for _, line := range h.Values("X-Forwarded-For") {
		for _, v := range strings.Split(line, ",") {
			out = append(out, parseHostPort(strings.TrimSpace(v)))
		}
	}
	return out
}

// parseHostPort reads "1.2.3.4", "1.2.3.4:5", "[::1]:5", "[::1]" or "::1".
func parseHostPort(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// Addr is the address of a net.Addr (a UDP or TCP peer).
func Addr(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	return parseHostPort(a.String())
}

// Key is the address per-client limits count against: the address itself
// for IPv4, its /64 for IPv6 (one subscriber line gets a whole /64, so a
// limit per IPv6 address would limit nobody).
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}
