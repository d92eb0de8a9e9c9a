package server_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/pkg/client"
)

func TestSelfSignedTLS(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.TLSSelfSigned = true })
	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatalf("URL %s", srv.URL())
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // our own self-signed certificate
	resp, err := hc.Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("healthz over TLS: %s", resp.Status)
	}
	// TURN over TLS runs with the same certificate, and members are told.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL(), &client.Options{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	j, err := c.Join(ctx, "tls", "x", "")
	if err != nil {
		t.Fatal(err)
	}
	want := "turns:127.0.0.1:" + strconv.Itoa(srv.TURN().TLSAddr().(*net.TCPAddr).Port) + "?transport=tcp"
	if urls := fmt.Sprint(j.ICEServers); !strings.Contains(urls, want) {
		t.Fatalf("ice servers %s lack %s", urls, want)
	}
}

// Without a certificate TURN over TLS stays off and is not announced.
func TestTURNTLSNeedsCertificate(t *testing.T) {
	srv := startServer(t, nil)
	if a := srv.TURN().TLSAddr(); a != nil {
		t.Fatalf("TURN over TLS on %v without a certificate", a)
	}
}

// With --turn-urls the members get the external server, with REST
// credentials an external coturn with the same secret accepts.
func TestExternalTURN(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.TURNExternal = []string{"turn:turn.example.org:3478?transport=udp"}
		c.TURNSecret = "shared-turn-secret-0123456789abcd"
	})
	if srv.TURN() != nil {
		t.Fatal("embedded TURN started although an external one is configured")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	j, err := c.Join(ctx, "ext", "x", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(j.ICEServers) != 1 || j.ICEServers[0].URLs[0] != "turn:turn.example.org:3478?transport=udp" {
		t.Fatalf("ice servers: %+v", j.ICEServers)
	}
	is := j.ICEServers[0]
	exp, user, ok := auth.TURNExpiry(is.Username)
	if !ok || user != j.ID || time.Until(exp) < 9*time.Minute || is.Credential != auth.TURNPassword([]byte("shared-turn-secret-0123456789abcd"), is.Username) {
		t.Fatalf("credential %+v", is)
	}
}
