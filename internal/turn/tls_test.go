package turn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	pturn "github.com/pion/turn/v4"
)

// withTLS turns on TURN over TLS on 127.0.0.1:0 with a fresh self-signed
// certificate for 127.0.0.1.
func withTLS(t *testing.T) func(*Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	return func(c *Config) { c.TLSListen, c.TLS = "127.0.0.1:0", cfg }
}

// dialTLS connects to s's TURN-over-TLS listener, trusting its certificate.
func dialTLS(t *testing.T, s *Server) (net.PacketConn, string) {
	t.Helper()
	leaf, err := x509.ParseCertificate(s.cfg.TLS.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	conn, err := tls.Dial("tcp", s.TLSAddr().String(), &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	return pturn.NewSTUNConn(conn), s.TLSAddr().String()
}

func TestRelayOverTLS(t *testing.T) {
	s := startServer(t, withTLS(t))
	c := dialClient(t, s, "tls", cred("alice", time.Hour))
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	exchange(t, relay, listenPeer(t, "udp4", "127.0.0.1:0"), 3)
	if st := s.Stats(); st.Allocations != 1 || st.RelayedPackets < 6 {
		t.Fatalf("stats: %+v", st)
	}
}

// Credentials and the per-address quota hold over TLS as over TCP.
func TestTLSCredentialsAndQuota(t *testing.T) {
	mod := withTLS(t)
	s := startServer(t, func(c *Config) { mod(c); c.PerIP = 1 })
	bad := cred("mallory", time.Hour)
	bad.Password = "wrong"
	if _, err := dialClient(t, s, "tls", bad).Allocate(); err == nil {
		t.Fatal("allocation over TLS with a wrong password succeeded")
	}
	if _, err := dialClient(t, s, "tls", cred("ann", time.Hour)).Allocate(); err != nil {
		t.Fatal(err)
	}
	if _, err := dialClient(t, s, "tls", cred("bob", time.Hour)).Allocate(); err == nil {
		t.Fatal("a 2nd allocation from one address over TLS succeeded with PerIP 1")
	}
}

func TestICEServersWithTLS(t *testing.T) {
	s := startServer(t, withTLS(t))
	tp := itoa(s.TLSAddr().(*net.TCPAddr).Port)
	got := s.ICEServers("turn.example.org:443", "x", time.Minute)
	if urls := strings.Join(got[1].URLs, " "); !strings.HasSuffix(urls, " turns:turn.example.org:"+tp+"?transport=tcp") {
		t.Fatalf("URLs %s lack turns:", urls)
	}
	// Without a certificate there is no TLS listener and no turns: URL.
	plain := startServer(t, func(c *Config) { c.TLSListen = "127.0.0.1:0" })
	if plain.TLSAddr() != nil || strings.Contains(strings.Join(plain.ICEServers("h", "x", time.Minute)[1].URLs, " "), "turns:") {
		t.Fatal("TLS listener without a certificate")
	}
}

// A client that connects to the TLS port and says nothing is closed once
// the handshake deadline passes.
func TestTLSHandshakeDeadline(t *testing.T) {
	mod := withTLS(t)
	s := startServer(t, func(c *Config) { mod(c); c.TLSHandshake = 200 * time.Millisecond })
	conn, err := net.Dial("tcp", s.TLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from a server still waiting for our handshake")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a silent TLS client was not closed after the handshake deadline")
	}
}
