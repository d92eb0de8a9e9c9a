package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/whip"
)

// joinWith joins room on srv with token and returns the refusal code ("" when joined).
func joinWith(t *testing.T, srv *server.Server, room, token string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL(), nil)
	if err == nil {
		defer c.Close()
		_, err = c.Join(ctx, room, "x", token)
	}
	var je *client.JoinError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &je):
		return je.Code
	default:
		t.Fatalf("join %s: %v", room, err)
		return ""
	}
}

// A server given only public keys (PEM or JWKS) has auth on and accepts
// the tokens their private keys sign, and nothing else.
func TestAuthWithPublicKeysOnly(t *testing.T) {
	dir := t.TempDir()
	key, err := auth.GenerateKey(auth.AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	_, pub, err := auth.EncodeKeyPair(key)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(dir, "parley.pub")
	jwksFile := filepath.Join(dir, "jwks.json")
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
		"x": base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey))}}})
	if os.WriteFile(pemFile, pub, 0o644) != nil || os.WriteFile(jwksFile, set, 0o644) != nil {
		t.Fatal("writing key files")
	}
	now := time.Now()
	claims := auth.Claims{Room: "team-*", Identity: "alice", Grants: auth.AllGrants, ExpiresAt: now.Add(time.Hour).Unix()}
	good, err := auth.MintWithKey(key, "k1", claims)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := auth.Mint([]byte("a-secret-the-server-does-not-have"), claims)
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*config.Config){
		"pem":  func(c *config.Config) { c.AuthPublicKey = pemFile },
		"jwks": func(c *config.Config) { c.AuthJWKS = jwksFile },
	} {
		srv := startServer(t, mod)
		for _, tc := range []struct{ room, token, code string }{
			{"team-a", "", protocol.CodeUnauthorized},
			{"team-a", hs, protocol.CodeUnauthorized},
			{"other", good, protocol.CodeForbidden},
			{"team-a", good, ""},
		} {
			if got := joinWith(t, srv, tc.room, tc.token); got != tc.code {
				t.Errorf("%s: join %s with token %.10q: %q, want %q", name, tc.room, tc.token, got, tc.code)
			}
		}
	}
	cfg := config.Default()
	cfg.AuthPublicKey = jwksFile // a JWKS is no PEM: refused at start, not ignored
	if _, err := server.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "PUBLIC KEY") {
		t.Errorf("JWKS as --auth-public-key: %v", err)
	}
}

// lockedBuffer collects a server's log lines from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Media on loopback without --public-ip: a warning says only this machine
// can reach it, and the loopback address is announced so this machine can.
func TestRow12LoopbackMediaWarnsAndAnnouncesLoopback(t *testing.T) {
	var logs lockedBuffer
	cfg := config.Default()
	cfg.HTTP, cfg.TURN, cfg.Ops = "127.0.0.1:0", "off", "127.0.0.1:0"
	cfg.MediaUDP, cfg.MediaTCP = "127.0.0.1:0", "off"
	cfg.RTMP = "127.0.0.1:0"
	cfg.RTSP, cfg.SRT = "127.0.0.1:0", "127.0.0.1:0"
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if !strings.Contains(logs.String(), "only this machine can reach") {
		t.Errorf("no loopback warning in:\n%s", logs.String())
	}
	api, _ := client.LoopbackAPI()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := whip.Publish(ctx, srv.URL()+"/whip/lo", whip.Options{API: api}, vp8(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if sdp := s.PeerConnection().RemoteDescription().SDP; !strings.Contains(sdp, " 127.0.0.1 ") {
		t.Errorf("no loopback candidate in the answer:\n%s", sdp)
	}
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatalf("media over loopback: %v", err)
	}
	// With a public address set, no warning.
	logs2 := &lockedBuffer{}
	cfg.PublicIP = "127.0.0.1"
	srv2, err := server.New(cfg, slog.New(slog.NewTextHandler(logs2, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv2.Close() })
	if strings.Contains(logs2.String(), "only this machine can reach") {
		t.Error("warned although --public-ip is set")
	}
}
