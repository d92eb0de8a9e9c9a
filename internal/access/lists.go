package access

import (
	"net/netip"

	"github.com/parley/parley/internal/config"
)

// List is a set of address ranges (CIDR prefixes).
type List []netip.Prefix

// ParseList reads "CIDR" or bare IP entries ("10.0.0.0/8", "2001:db8::/32",
// "192.0.2.7") by config.ParseCIDRs, the rule the configuration is
// validated with.
func ParseList(items []string) (List, error) {
	l, err := config.ParseCIDRs(items)
	return List(l), err
}

// Contains reports whether a (unmapped) is inside one of the ranges.
func (l List) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range l {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// StreamLists are one stream's (or stream pattern's) own lists. Deny
// always applies and wins; a non-empty allow list replaces the global one
// for the streams it names.
type StreamLists struct {
	PublishAllow, PublishDeny List
	ReadAllow, ReadDeny       List
}

// Lists are the CIDR lists of a server: a global allow list per action
// (empty: every address) and per-stream lists keyed by stream name or
// path.Match pattern ("cam-*").
type Lists struct {
	PublishAllow, ReadAllow List
	Streams                 map[string]StreamLists
}

// Allows decides whether remote may publish (publish true) or read
// stream; the reason says which list refused.
func (l *Lists) Allows(stream string, publish bool, remote netip.Addr) (ok bool, reason string) {
	s, _ := config.Lookup(l.Streams, stream) // the exact name, else the longest matching pattern
	allow, deny, global, what := s.ReadAllow, s.ReadDeny, l.ReadAllow, "read"
	if publish {
		allow, deny, global, what = s.PublishAllow, s.PublishDeny, l.PublishAllow, "publish"
	}
	switch {
	case deny.Contains(remote):
		return false, "the address is in stream_access " + what + "_deny"
	case len(allow) > 0:
		if !allow.Contains(remote) {
			return false, "the address is not in stream_access " + what + "_allow"
		}
	case len(global) > 0:
		if !global.Contains(remote) {
			return false, "the address is not in --" + what + "-allow"
		}
	}
	return true, ""
}
