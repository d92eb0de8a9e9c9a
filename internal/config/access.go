package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// StreamAccess is one stream's (or stream pattern's) address lists, in
// the config file's stream_access: block. Each list holds CIDRs or bare
// IPs. Deny wins; a non-empty allow list replaces --publish-allow or
// --read-allow for the streams it names.
type StreamAccess struct {
	PublishAllow []string `yaml:"publish_allow"`
	PublishDeny  []string `yaml:"publish_deny"`
	ReadAllow    []string `yaml:"read_allow"`
	ReadDeny     []string `yaml:"read_deny"`
}

// Hooks are the webhooks asked before a publish or play and told when a
// session ends (the hooks: block, or --on-publish, --on-play, --on-done,
// --hook-timeout).
type Hooks struct {
	OnPublish string `yaml:"on_publish"`
	OnPlay    string `yaml:"on_play"`
	OnDone    string `yaml:"on_done"`
	// OnRecordDone is told of each finished recording file (--on-record-done).
	OnRecordDone string   `yaml:"on_record_done"`
	Timeout      Duration `yaml:"timeout"`
}

// ParseCIDRs reads "CIDR" or bare IP entries ("10.0.0.0/8",
// "2001:db8::/32", "192.0.2.7") into masked prefixes; blank entries are
// skipped. IPv4-mapped IPv6 ranges and zones are refused rather than
// guessed at.
func ParseCIDRs(items []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(items))
	for _, s := range items {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				return nil, fmt.Errorf("%q is not a CIDR (like 10.0.0.0/8 or 2001:db8::/32)", s)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR", s)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("%q has an IPv6 zone, which a CIDR list cannot use", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q is an IPv4-mapped IPv6 range: write it as IPv4", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// CheckHookURL accepts "" (off) or an absolute http:// or https:// URL.
func CheckHookURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	return nil
}

// validateAccess checks the CIDR lists, stream_access and hooks.
func (c *Config) validateAccess(bad func(string, ...any)) {
	cidrs := func(name string, l []string) {
		if _, err := ParseCIDRs(l); err != nil {
			bad("%s: %v", name, err)
		}
	}
	cidrs("publish-allow", c.PublishAllow)
	cidrs("read-allow", c.ReadAllow)
	for name, s := range c.StreamAccess {
		if !roomPatternRE.MatchString(name) {
			bad("stream_access: %q is not a stream name or pattern (A-Z a-z 0-9 _ . - and the wildcards * ?)", name)
		}
		cidrs("stream_access."+name+".publish_allow", s.PublishAllow)
		cidrs("stream_access."+name+".publish_deny", s.PublishDeny)
		cidrs("stream_access."+name+".read_allow", s.ReadAllow)
		cidrs("stream_access."+name+".read_deny", s.ReadDeny)
	}
	for _, h := range []struct{ name, u string }{{"on-publish", c.Hooks.OnPublish}, {"on-play", c.Hooks.OnPlay}, {"on-done", c.Hooks.OnDone}, {"on-record-done", c.Hooks.OnRecordDone}} {
		if err := CheckHookURL(h.u); err != nil {
			bad("%s: %v", h.name, err)
		}
	}
	if c.Hooks.Timeout <= 0 {
		bad("hook-timeout: must be > 0")
	}
}
