package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestRequest(t *testing.T) {
	r := New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	cases := []struct {
		remote, xff, fwd, want string
	}{
		{"192.0.2.9:1234", "", "", "192.0.2.9"},
		{"192.0.2.9:1234", "203.0.113.5", "", "192.0.2.9"},              // untrusted peer: header ignored
		{"10.0.0.2:1234", "203.0.113.5", "", "203.0.113.5"},             // trusted proxy
		{"10.0.0.2:1234", "6.6.6.6, 203.0.113.5", "", "203.0.113.5"},    // the client's own prefix is not believed
		{"10.0.0.2:1234", "203.0.113.5, 10.0.0.3", "", "203.0.113.5"},   // two trusted hops
		{"10.0.0.2:1234", "garbage", "", "10.0.0.2"},                    // garbled: the proxy itself
		{"10.0.0.2:1234", "", `for="[2001:db8::1]:443"`, "2001:db8::1"}, // RFC 7239
		{"10.0.0.2:1234", "1.1.1.1", "for=203.0.113.7;proto=https", "203.0.113.7"},
		{"[::ffff:192.0.2.1]:80", "", "", "192.0.2.1"},
	}
	for _, c := range cases {
		req := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
		if c.xff != "" {
			req.Header.Set("X-Forwarded-For", c.xff)
		}
		if c.fwd != "" {
			req.Header.Set("Forwarded", c.fwd)
		}
		if got := r.Request(req); got.String() != c.want {
			t.Errorf("%+v: got %v", c, got)
		}
	}
}

func TestKeyGroupsIPv6By64(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if Key(a) != Key(b) || Key(a) == Key(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Fatal("IPv6 keys are not per /64")
	}
	if v4 := netip.MustParseAddr("192.0.2.1"); Key(v4) != v4 {
		t.Fatal("IPv4 key changed")
	}
}

func FuzzRequest(f *testing.F) {
	f.Add("10.0.0.2:1", "1.2.3.4, 10.0.0.3", `for="[::1]";by=x`)
	r := New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		req := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Forwarded-For": {xff}, "Forwarded": {fwd}}}
		got := r.Request(req)
		peer := parseHostPort(remote)
		if !r.isTrusted(peer) && got != peer {
			t.Fatalf("an untrusted peer %v was taken for %v", peer, got)
		}
		if got.IsValid() && r.isTrusted(got) && got != peer {
			t.Fatalf("answered a trusted proxy %v that is not the peer", got)
		}
	})
}
