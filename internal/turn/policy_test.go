package turn

import (
	"net/netip"
	"testing"
)

func TestPeerAllowed(t *testing.T) {
	allowLoop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	allowLAN := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/32")}
	cases := []struct {
		addr  string
		allow []netip.Prefix
		want  bool
	}{
		{"8.8.8.8", nil, true},
		{"1.1.1.1", allowLoop, true},
		{"2606:4700::1111", nil, true},
		{"::ffff:8.8.8.8", nil, true},
		{"64:ff9b::808:808", nil, true}, // NAT64 of 8.8.8.8
		{"127.0.0.1", nil, false},
		{"127.0.0.1", allowLoop, true},
		{"127.255.255.254", allowLoop, true},
		{"::ffff:127.0.0.1", allowLoop, true},
		{"::ffff:127.0.0.1", nil, false},
		{"10.0.0.1", nil, false},
		{"10.0.0.1", allowLoop, false},
		{"10.1.2.3", allowLAN, true},
		{"10.2.0.1", allowLAN, false},
		{"172.16.0.1", nil, false},
		{"172.31.255.255", nil, false},
		{"172.32.0.1", nil, true},
		{"192.168.1.1", nil, false},
		{"100.64.0.1", nil, false},
		{"100.127.255.255", nil, false},
		{"100.128.0.1", nil, true},
		{"169.254.169.254", nil, false},
		{"169.254.169.254", allowLoop, false},
		{"169.254.1.1", nil, false},
		{"0.0.0.0", nil, false},
		{"0.1.2.3", nil, false},
		{"224.0.0.1", nil, false},
		{"239.255.255.250", nil, false},
		{"255.255.255.255", nil, false},
		{"::", nil, false},
		{"::1", nil, false},
		{"::1", allowLoop, false},
		{"fe80::1", nil, false},
		{"fe80::1%eth0", nil, false},
		{"fc00::1", nil, false},
		{"fd00::2", nil, false},
		{"fd00:1::5", allowLAN, true},
		{"fec0::1", nil, false},
		{"ff02::1", nil, false},
		{"::ffff:10.0.0.1", nil, false},
		{"::ffff:169.254.169.254", nil, false},
		{"::ffff:192.168.0.1", nil, false},
		{"::10.0.0.1", nil, false},          // IPv4-compatible
		{"64:ff9b::a00:1", nil, false},      // NAT64 of 10.0.0.1
		{"64:ff9b::a9fe:a9fe", nil, false},  // NAT64 of 169.254.169.254
		{"2002:a00:1::1", nil, false},       // 6to4 of 10.0.0.1
		{"2002:808:808::1", nil, true},      // 6to4 of 8.8.8.8
		{"2002:7f00:1::1", allowLoop, true}, // 6to4 of 127.0.0.1, allowed
	}
	for _, tc := range cases {
		if got := PeerAllowed(netip.MustParseAddr(tc.addr), tc.allow); got != tc.want {
			t.Errorf("PeerAllowed(%s, %v) = %v, want %v", tc.addr, tc.allow, got, tc.want)
		}
	}
	if PeerAllowed(netip.Addr{}, nil) {
		t.Error("zero Addr allowed")
	}
}
