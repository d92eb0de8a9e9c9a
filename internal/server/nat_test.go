package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/netlab"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// TestNATMatrix runs two pion peers, each in its own namespace behind its
// own NAT router (internal/netlab), through a Parley server on the lab's
// public segment, and asserts the ICE pair they settle on: p2p behind
// full-cone NATs (via Parley's STUN), relayed behind symmetric NATs (via
// Parley's TURN), and TURN over TCP and over TLS for a client whose UDP is
// blocked. The peers are this test binary run again in the namespaces
// (TestNATPeer): a Go process's sockets belong to the namespace of the
// thread that opened them, so they cannot live in this process.
func TestNATMatrix(t *testing.T) {
	lab := netlab.New(t)
	host := lab.HostIP.String()
	srv := startServer(t, func(c *config.Config) {
		c.HTTP, c.TURN, c.TURNTLS = host+":0", host+":0", host+":0"
		c.TURNAllow = []string{"10.213.0.0/16"} // the lab's public segment
		c.TLSSelfSigned = true                  // made now: covers the lab address
	})
	certFile := serverCertFile(t, srv)
	cases := []struct {
		name   string
		a, b   netlab.NAT
		blockA bool
		bad    bool   // both links: 80 ± 30 ms each way, 5 % loss, 1.5 Mbit/s
		iceA   string // which of A's ICE servers to keep: all, tcp (turn:?transport=tcp), tls (turns:)
		check  func(a, b pairInfo) error
	}{
		{name: "full-cone", a: netlab.FullCone, b: netlab.FullCone, iceA: "all", check: direct},
		// Two Linux port-restricted NATs (plain MASQUERADE) need not
		// punch through: the first check to arrive at the other router
		// leaves a conntrack entry for the router itself, so that side's
		// own outgoing check clashes with it and MASQUERADE picks another
		// port. Any pair that connects passes; the log says which.
		{name: "port-restricted", a: netlab.PortRestricted, b: netlab.PortRestricted, iceA: "all", check: func(a, b pairInfo) error { return nil }},
		{name: "symmetric", a: netlab.Symmetric, b: netlab.Symmetric, iceA: "all", check: relayed},
		{name: "full-cone-bad-links", a: netlab.FullCone, b: netlab.FullCone, bad: true, iceA: "all", check: direct},
		{name: "symmetric-bad-links", a: netlab.Symmetric, b: netlab.Symmetric, bad: true, iceA: "all", check: relayed},
		{name: "udp-blocked-tcp", a: netlab.PortRestricted, b: netlab.FullCone, blockA: true, iceA: "tcp", check: relayedOver("tcp")},
		{name: "udp-blocked-tls", a: netlab.PortRestricted, b: netlab.FullCone, blockA: true, iceA: "tls", check: relayedOver("tls")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []netlab.Option
			if tc.bad {
				opts = append(opts, netlab.Delay(80*time.Millisecond, 30*time.Millisecond))
			}
			ca, cb := lab.AddClient(tc.a, opts...), lab.AddClient(tc.b, opts...)
			if tc.bad {
				for _, c := range []*netlab.Client{ca, cb} {
					c.Loss(0.05)
					c.RateLimit(1500)
				}
			}
			if tc.blockA {
				ca.BlockUDP()
			}
			room := "nat-" + tc.name
			// The first member makes the offer when the second joins.
			start := time.Now()
			// On lossy links the direct pair's checks can lose several
			// packets in a row; pion's controlling side settles for a
			// working relay pair after 2 s (RelayAcceptanceMinWait). Where
			// the case asserts that a direct path exists, it gives the
			// direct checks longer before a relay may be chosen.
			var env []string
			if tc.bad {
				env = append(env, "NETLAB_RELAY_WAIT=8s")
			}
			a := startNATPeer(t, ca, srv.URL(), room, "offer", tc.iceA, certFile, env...)
			a.waitLine(t, "JOINED")
			b := startNATPeer(t, cb, srv.URL(), room, "answer", "all", certFile, env...)
			pa, pb := a.pair(t), b.pair(t)
			pa.peerWAN, pb.peerWAN = cb.WANIP.String(), ca.WANIP.String()
			t.Logf("connected in %v; a behind %s: %+v; b behind %s: %+v", time.Since(start).Round(time.Millisecond), tc.a, pa, tc.b, pb)
			if err := tc.check(pa, pb); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// direct: each side reaches the other at the other's NAT address (the
// remote is srflx, or prflx when its checks came before its candidate).
func direct(a, b pairInfo) error {
	for _, p := range []pairInfo{a, b} {
		if p.local == "relay" || p.remote == "relay" || p.remoteIP != p.peerWAN {
			return fmt.Errorf("want a direct pair through the NATs, got %+v", p)
		}
	}
	return nil
}

// relayed: Parley's TURN carries the call (a relay candidate in each
// side's pair).
func relayed(a, b pairInfo) error {
	for _, p := range []pairInfo{a, b} {
		if p.local != "relay" && p.remote != "relay" {
			return fmt.Errorf("want a relayed pair, got %+v", p)
		}
	}
	return nil
}

func relayedOver(proto string) func(a, b pairInfo) error {
	return func(a, _ pairInfo) error {
		if a.local != "relay" || a.relayProto != proto {
			return fmt.Errorf("want the UDP-blocked client on a TURN/%s relay, got %+v", proto, a)
		}
		return nil
	}
}

// serverCertFile writes the server's self-signed certificate as PEM, for
// the peers' SSL_CERT_FILE: they then verify both HTTPS and turns: as a
// browser that trusts the certificate would.
func serverCertFile(t *testing.T, srv *server.Server) string {
	t.Helper()
	addr := strings.TrimPrefix(srv.URL(), "https://")
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // fetching the certificate to trust
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	der := conn.ConnectionState().PeerCertificates[0].Raw
	file := filepath.Join(t.TempDir(), "parley.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// pairInfo is a peer's selected pair: candidate types, the remote's
// address, how the local relay reaches TURN ("-" unless relay), and (set
// by the test) the other peer's NAT address.
type pairInfo struct{ local, remote, remoteIP, relayProto, peerWAN string }

// natPeer is a TestNATPeer child process in a client namespace.
type natPeer struct {
	cmd   *exec.Cmd
	lines chan string
	stdin io.WriteCloser
	log   *strings.Builder
}

func startNATPeer(t *testing.T, c *netlab.Client, url, room, role, ice, certFile string, env ...string) *natPeer {
	t.Helper()
	exe, err := os.Executable() // resolved here: inside `ip netns exec`, /proc/self/exe is ip
	if err != nil {
		t.Fatal(err)
	}
	cmd := c.Command(exe, "-test.run=^TestNATPeer$", "-test.timeout=90s")
	cmd.Env = append(os.Environ(), "NETLAB_PEER="+role, "NETLAB_URL="+url, "NETLAB_ROOM="+room,
		"NETLAB_ICE="+ice, "SSL_CERT_FILE="+certFile)
	cmd.Env = append(cmd.Env, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &natPeer{cmd: cmd, lines: make(chan string, 64), stdin: stdin, log: &strings.Builder{}}
	cmd.Stderr = p.log // read only after Wait
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // ends when the child's stdout closes
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the peer leaves when its stdin closes
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s peer (%s) stderr:\n%s", role, c.NS, p.log.String())
		}
	})
	return p
}

// waitLine waits for a line starting with prefix and returns the rest.
func (p *natPeer) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(45 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("peer exited before %s", prefix)
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return strings.TrimSpace(rest)
			}
		case <-deadline:
			t.Fatalf("no %s from the peer within 45 s", prefix)
		}
	}
}

func (p *natPeer) pair(t *testing.T) pairInfo {
	t.Helper()
	var pi pairInfo
	if _, err := fmt.Sscanf(p.waitLine(t, "PAIR"), "local=%s remote=%s remoteip=%s relay=%s", &pi.local, &pi.remote, &pi.remoteIP, &pi.relayProto); err != nil {
		t.Fatal(err)
	}
	return pi
}

// TestNATPeer is the peer TestNATMatrix runs inside a namespace; on its
// own it does nothing. It joins the room, connects a data channel to the
// other member, prints "PAIR local=<type> remote=<type> remoteip=<ip>
// relay=<proto>"
// and stays until its stdin closes.
func TestNATPeer(t *testing.T) {
	role := os.Getenv("NETLAB_PEER")
	if role == "" {
		t.Skip("run by TestNATMatrix inside a network namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, os.Getenv("NETLAB_URL"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	j, err := c.Join(ctx, os.Getenv("NETLAB_ROOM"), role, "")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("JOINED", j.ID)
	var api *webrtc.API
	if d, err := time.ParseDuration(os.Getenv("NETLAB_RELAY_WAIT")); err == nil {
		se := webrtc.SettingEngine{}
		se.SetRelayAcceptanceMinWait(d)
		api = webrtc.NewAPI(webrtc.WithSettingEngine(se))
	}
	pc, err := client.NewPeerConnection(api, keepICE(j.ICEServers, os.Getenv("NETLAB_ICE")), false)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// State changes with times go to stderr, which the test shows on failure.
	t0 := time.Now()
	pc.OnICEGatheringStateChange(func(st webrtc.ICEGatheringState) { fmt.Fprintln(os.Stderr, time.Since(t0), "gathering", st) })
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) { fmt.Fprintln(os.Stderr, time.Since(t0), "ice", st) })
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) { fmt.Fprintln(os.Stderr, time.Since(t0), "peer connection", st) })
	p := &peer{t: t, c: c, pc: pc, id: j.ID, got: make(chan []byte, 1), msg: make(chan string, 10)}
	connected := make(chan struct{})
	if role == "offer" {
		var other string
		for m := range c.Events() {
			if m.Type == protocol.TypePeerJoined {
				other = m.ID
				break
			}
		}
		p.wire(other)
		dc, err := pc.CreateDataChannel("nat", nil)
		if err != nil {
			t.Fatal(err)
		}
		dc.OnOpen(func() {
			_ = dc.SendText("hello through the NAT")
			close(connected)
		})
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetLocalDescription(offer); err != nil {
			t.Fatal(err)
		}
		c.Signal(ctx, other, sdpOrCandidate{SDP: &offer})
	} else {
		if len(j.Peers) != 1 {
			t.Fatalf("joined with peers %+v, want the offerer", j.Peers)
		}
		pc.OnDataChannel(func(dc *webrtc.DataChannel) {
			dc.OnMessage(func(webrtc.DataChannelMessage) { close(connected) })
		})
		p.wire(j.Peers[0].ID) // its reader answers the offer when it comes
	}
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatalf("no data channel (ICE %s)", pc.ICEConnectionState())
	}
	pair, err := selectedPair(pc)
	if err != nil || pair == nil {
		t.Fatalf("selected pair: %v %v", pair, err)
	}
	fmt.Printf("PAIR local=%s remote=%s remoteip=%s relay=%s\n", pair.Local.Typ, pair.Remote.Typ, pair.Remote.Address, relayProtocol(pc, pair.Local))
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// keepICE keeps the ICE servers a case allows: "tcp" only TURN over TCP,
// "tls" only TURN over TLS.
func keepICE(servers []protocol.ICEServer, which string) []protocol.ICEServer {
	if which == "all" || which == "" {
		return servers
	}
	var out []protocol.ICEServer
	for _, s := range servers {
		var urls []string
		for _, u := range s.URLs {
			if (which == "tcp" && strings.HasPrefix(u, "turn:") && strings.HasSuffix(u, "transport=tcp")) ||
				(which == "tls" && strings.HasPrefix(u, "turns:")) {
				urls = append(urls, u)
			}
		}
		if len(urls) > 0 {
			s.URLs = urls
			out = append(out, s)
		}
	}
	return out
}

// relayProtocol is how a local relay candidate reaches TURN (udp, tcp,
// tls), "-" for other candidates.
func relayProtocol(pc *webrtc.PeerConnection, local *webrtc.ICECandidate) string {
	if local.Typ != webrtc.ICECandidateTypeRelay {
		return "-"
	}
	for _, s := range pc.GetStats() {
		if cs, ok := s.(webrtc.ICECandidateStats); ok && cs.CandidateType == webrtc.ICECandidateTypeRelay &&
			cs.IP == local.Address && cs.Port == int32(local.Port) && cs.RelayProtocol != "" {
			return cs.RelayProtocol
		}
	}
	return "?"
}
