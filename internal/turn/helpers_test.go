package turn

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v3"
	pturn "github.com/pion/turn/v4"
	turn5 "github.com/pion/turn/v5"

	"github.com/parley/parley/internal/auth"
)

var testSecret = []byte("test-secret")

var loopback4 = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func testLogger() *slog.Logger {
	if os.Getenv("TURN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServer runs a server on 127.0.0.1:0 that may relay to loopback;
// mod adjusts the config first.
func startServer(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Listen:     "127.0.0.1:0",
		Secret:     testSecret,
		AllowPeers: loopback4,
		Sockets:    2,
		Logger:     testLogger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func cred(user string, ttl time.Duration) auth.TURNCredential {
	return auth.NewTURNCredential(testSecret, user, ttl, time.Now())
}

// dialClient connects a pion TURN client to s over "udp", "tcp" or "tls".
func dialClient(t *testing.T, s *Server, transport string, c auth.TURNCredential) *pturn.Client {
	t.Helper()
	var conn net.PacketConn
	var srvAddr string
	switch transport {
	case "udp":
		udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn, srvAddr = udp, s.UDPAddr().String()
	case "tcp":
		tcp, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, srvAddr = pturn.NewSTUNConn(tcp), s.TCPAddr().String()
	case "tls":
		conn, srvAddr = dialTLS(t, s)
	}
	return newClient(t, conn, srvAddr, c)
}

func newClient(t *testing.T, conn net.PacketConn, srvAddr string, c auth.TURNCredential) *pturn.Client {
	t.Helper()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	client, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: srvAddr,
		TURNServerAddr: srvAddr,
		Conn:           conn,
		Username:       c.Username,
		Password:       c.Password,
		LoggerFactory:  lf,
		RTO:            100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		_ = conn.Close()
	})
	return client
}

// listenPeer is a plain UDP peer on loopback.
func listenPeer(t *testing.T, network, addr string) net.PacketConn {
	t.Helper()
	p, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// readWithin reads one datagram or fails the test after d.
func readWithin(t *testing.T, c net.PacketConn, d time.Duration) (string, net.Addr) {
	t.Helper()
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read on %s: %v", c.LocalAddr(), err)
	}
	return string(buf[:n]), from
}

// waitFor polls cond for up to 3 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawChannelBind allocates over a bare UDP socket and asks for a channel to
// peer, returning the ChannelBind response class. pion's client binds
// channels only implicitly on its first write, which would try to send
// data; a hand-built request tests the refusal without any payload.
func rawChannelBind(t *testing.T, s *Server, c auth.TURNCredential, peer netip.AddrPort) stun.MessageClass {
	t.Helper()
	conn := listenPeer(t, "udp4", "127.0.0.1:0")
	srv := s.UDPAddr()
	transport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	res := rawRoundTrip(t, conn, srv, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transport)
	var nonce stun.Nonce
	var realm stun.Realm
	if err := nonce.GetFrom(res); err != nil {
		t.Fatalf("no nonce in %v: %v", res, err)
	}
	_ = realm.GetFrom(res)
	integrity := stun.NewLongTermIntegrity(c.Username, realm.String(), c.Password)
	authAttrs := []stun.Setter{stun.NewUsername(c.Username), realm, nonce}
	alloc := append([]stun.Setter{transport}, append(authAttrs, integrity)...)
	res = rawRoundTrip(t, conn, srv, stun.NewType(stun.MethodAllocate, stun.ClassRequest), alloc...)
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("raw allocate failed: %v", res)
	}
	peerAttr := peerAddress{peer}
	channel := stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x40, 0x00, 0, 0}}
	bind := append([]stun.Setter{channel, peerAttr}, append(authAttrs, integrity)...)
	res = rawRoundTrip(t, conn, srv, stun.NewType(stun.MethodChannelBind, stun.ClassRequest), bind...)
	return res.Type.Class
}

type peerAddress struct{ ap netip.AddrPort }

func (p peerAddress) AddTo(m *stun.Message) error {
	a := stun.XORMappedAddress{IP: p.ap.Addr().AsSlice(), Port: int(p.ap.Port())}
	return a.AddToAs(m, stun.AttrXORPeerAddress)
}

func rawRoundTrip(t *testing.T, conn net.PacketConn, srv net.Addr, typ stun.MessageType, attrs ...stun.Setter) *stun.Message {
	t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, typ}, attrs...)
	req := stun.MustBuild(setters...)
	if _, err := conn.WriteTo(req.Raw, srv); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("raw %v: %v", typ, err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil {
		t.Fatal(err)
	}
	return res
}

// newClientV6 is newClient for IPv6 servers: pion/turn v4's client resolves
// server addresses as udp4 only, v5's client does not (and speaks the same
// protocol to our v4-based server).
func newClientV6(t *testing.T, conn net.PacketConn, srvAddr string, c auth.TURNCredential) *turn5.Client {
	t.Helper()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	client, err := turn5.NewClient(&turn5.ClientConfig{
		STUNServerAddr: srvAddr,
		TURNServerAddr: srvAddr,
		Conn:           conn,
		Username:       c.Username,
		Password:       c.Password,
		LoggerFactory:  lf,
		RTO:            100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}
