// Package origin decides which web pages may use Parley's APIs from a
// browser. A page's Origin is judged against the server's own names (its
// listeners' addresses, --public-ip, --public-host, the TLS certificate's
// names) and the operator's --allow-origins patterns — never against the
// request's Host header, which the attacker's page controls under DNS
// rebinding (evil.example resolving to this server).
package origin

import (
	"net"
	"net/url"
	"path"
	"strings"
)

// Policy is the set of origins whose pages may call the APIs.
type Policy struct {
	hosts    map[string]bool // lower-case host names and IP literals, no port
	patterns []string        // lower-case path.Match patterns: host, or scheme://host
}

// New builds a policy from the server's own host names (ports are
// ignored) and the --allow-origins patterns. Loopback names are always
// the server's own.
func New(ownHosts, patterns []string) *Policy {
	p := &Policy{hosts: map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}}
	for _, h := range ownHosts {
		p.AddHost(h)
	}
	for _, pat := range patterns {
		p.patterns = append(p.patterns, strings.ToLower(pat))
	}
	return p
}

// AddHost adds one of the server's own names ("host", "host:port",
// "[v6]:port" or a bare IPv6 literal).
func (p *Policy) AddHost(h string) {
	if h = hostOnly(h); h != "" {
		p.hosts[h] = true
	}
}

// AddInterfaceAddrs adds every address of this machine's interfaces, for
// a server listening on all of them (users reach it by any of them).
func (p *Policy) AddInterfaceAddrs() {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			p.hosts[n.IP.String()] = true
		}
	}
}

func hostOnly(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.Trim(h, "[]"), ".")
}

// Allowed reports whether a page from origin may use the APIs. An empty
// origin (no Origin header: not a browser page) is allowed; the caller's
// token checks still apply.
func (p *Policy) Allowed(origin string) bool {
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if p.hosts[hostOnly(u.Host)] {
		return true
	}
	for _, pat := range p.patterns {
		target := strings.ToLower(u.Host)
		if strings.Contains(pat, "://") {
			target = strings.ToLower(u.Scheme) + "://" + target
		}
		if ok, _ := path.Match(pat, target); ok {
			return true
		}
	}
	return false
}

// IsOwn reports whether origin is one of the server's own pages (not a
// page of an --allow-origins site).
func (p *Policy) IsOwn(origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && p.hosts[hostOnly(u.Host)]
}
