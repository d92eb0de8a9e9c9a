package e2e

import (
	"net"
	"testing"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/netlab"
)

// TestNetlabNATChromium: two Chromium members of a p2p call, each in its
// own namespace behind its own NAT router, connect through Parley's TURN
// where nothing else can work, and getStats names the pair they use:
//   - both behind symmetric (port-randomizing) NATs: a relayed pair;
//   - one whose network drops all UDP and the TLS port: TURN over TCP;
//   - one whose network drops all UDP and the TURN TCP port: TURN over TLS
//     (--turn-tls with the server's self-signed certificate, which the
//     browsers are told to accept).
//
// The server serves HTTPS with a self-signed certificate, so the pages are
// a secure context without any origin exemption.
func TestNetlabNATChromium(t *testing.T) {
	cases := []struct {
		name   string
		a, b   netlab.NAT
		block  string // A's network: "" or the TURN transport left open: "tcp", "tls"
		relay  string // the relay protocol A must use ("" = any)
		remote bool   // B's pair must be relayed too
	}{
		{name: "symmetric", a: netlab.Symmetric, b: netlab.Symmetric, remote: true},
		{name: "udp-blocked-tcp", a: netlab.PortRestricted, b: netlab.FullCone, block: "tcp", relay: "tcp"},
		{name: "udp-blocked-tls", a: netlab.PortRestricted, b: netlab.FullCone, block: "tls", relay: "tls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.New(t)
			host := lab.HostIP.String()
			e := newLabEnv(t, lab, func(c *config.Config) {
				c.TURNTLS = host + ":0"
				c.TLSSelfSigned = true // made now: covers the lab address
			})
			ca, cb := lab.AddClient(tc.a), lab.AddClient(tc.b)
			if tc.block != "" {
				ca.BlockUDP()
				turn := e.srv.TURN()
				closed := turn.TLSAddr() // block the transport not under test
				if tc.block == "tls" {
					closed = turn.TCPAddr()
				}
				ca.BlockPort("tcp", closed.(*net.TCPAddr).Port)
			}
			ign := withFlag("ignore-certificate-errors", true)
			a, b := e.launchIn(ca, "Ana", ign), e.launchIn(cb, "Ben", ign)
			a.join("nat-" + tc.name)
			b.join("nat-" + tc.name)
			a.waitDecodingFrom(45*time.Second, "Ben")
			b.waitDecodingFrom(45*time.Second, "Ana")
			sa, sb := a.mediaStats()["Ben"], b.mediaStats()["Ana"]
			t.Logf("Ana (%s): %s %s/%s → %s %s; Ben (%s): %s %s/%s → %s %s", tc.a,
				sa.LocalCand, sa.LocalProto, sa.RelayProto, sa.RemoteCand, sa.RemoteAddress,
				tc.b, sb.LocalCand, sb.LocalProto, sb.RelayProto, sb.RemoteCand, sb.RemoteAddress)
			if sa.LocalCand != "relay" && sa.RemoteCand != "relay" {
				t.Fatalf("Ana's pair is %s → %s, want it relayed", sa.LocalCand, sa.RemoteCand)
			}
			if tc.remote && sb.LocalCand != "relay" && sb.RemoteCand != "relay" {
				t.Fatalf("Ben's pair is %s → %s, want it relayed", sb.LocalCand, sb.RemoteCand)
			}
			if tc.relay != "" && (sa.LocalCand != "relay" || sa.RelayProto != tc.relay) {
				t.Fatalf("Ana's local candidate is %s over %q, want a relay reached over %s", sa.LocalCand, sa.RelayProto, tc.relay)
			}
		})
	}
}
