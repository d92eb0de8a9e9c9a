package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
)

func noEnv(string) string { return "" }

// testSecret is long enough for servers to accept (32 bytes or more).
const testSecret = "cmd-test-secret-0123456789abcdef"

func TestBadFlagsExitTwoWithoutPanic(t *testing.T) {
	for _, args := range [][]string{
		{"--room-capacity", "-1"},
		{"--http", "nowhere"},
		{"--bogus"},
		{"serve", "--config", "/does/not/exist.yaml"},
		{"frobnicate"},
		{"token", "--room", "r"},
		{"--auth-secret", "a"},            // row 12: a guessable secret no longer starts
		{"--turn-urls", "turn:t.example"}, // row 12: TURN credentials that could never authenticate
		{"token", "--auth-secret", "short", "--room", "r", "--identity", "u"},
		{"token", "--auth-secret", testSecret, "--key", "k.pem", "--room", "r", "--identity", "u"},
		{"token", "--key", "/does/not/exist.pem", "--room", "r", "--identity", "u"},
		{"token", "secret", "extra"},
		{"token", "keypair", "--alg", "rsa", "--out", "x"},
		{"token", "keypair"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, noEnv, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if strings.Contains(errb.String(), "goroutine ") || errb.Len() == 0 {
			t.Errorf("%v: stderr %q", args, errb.String())
		}
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, noEnv, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, opt := range []string{"-http", "-turn", "-public-ip", "-turn-secret", "-turn-allow-peers", "-room-capacity", "-auth-secret", "-tls-cert", "-tls-key", "-tls-self-signed", "-config", "-auth-secret-file", "-auth-public-key", "-auth-jwks", "-turn-secret-file"} {
		if !strings.Contains(errb.String(), "  "+opt) {
			t.Errorf("--help lacks %s", opt)
		}
	}
}

// verifier builds what a server started with keys would verify with.
func verifier(t *testing.T, k auth.Keys) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenCommand(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"token", "--auth-secret", testSecret, "--room", "team-*", "--identity", "ann", "--name", "Ann A.", "--ttl", "1h", "--grants", "publish,admin"}, noEnv, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	c, err := verifier(t, auth.Keys{Secret: []byte(testSecret)}).Verify(strings.TrimSpace(out.String()), time.Now())
	if err != nil || c.Identity != "ann" || c.Name != "Ann A." || !c.AllowsRoom("team-x") || !c.Grants.Admin || c.Grants.Subscribe {
		t.Fatalf("token: %v %+v", err, c)
	}
	// The environment's secret works too; a short one is refused with
	// how to make a good one.
	out.Reset()
	env := func(k string) string {
		if k == "PARLEY_AUTH_SECRET" {
			return testSecret
		}
		return ""
	}
	if code := run([]string{"token", "--room", "r", "--identity", "u"}, env, &out, &errb); code != 0 {
		t.Fatalf("PARLEY_AUTH_SECRET: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"token", "--auth-secret", "s3cret", "--room", "r", "--identity", "u"}, noEnv, &out, &errb); code != 2 || !strings.Contains(errb.String(), "parley token secret") {
		t.Fatalf("short secret: exit %d: %s", code, errb.String())
	}
}

func TestTokenSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		var out, errb bytes.Buffer
		if code := run([]string{"token", "secret"}, noEnv, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		s := strings.TrimSpace(out.String())
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != 32 || seen[s] {
			t.Fatalf("secret %q: %v", s, err)
		}
		seen[s] = true
		// What it prints is a secret servers and `parley token` take.
		if code := run([]string{"token", "--auth-secret", s, "--room", "r", "--identity", "u"}, noEnv, &out, &errb); code != 0 {
			t.Fatalf("minting with it: exit %d: %s", code, errb.String())
		}
	}
}

func TestTokenKeypair(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"ed25519", "es256"} {
		prefix := filepath.Join(dir, alg)
		var out, errb bytes.Buffer
		if code := run([]string{"token", "keypair", "--alg", alg, "--out", prefix}, noEnv, &out, &errb); code != 0 {
			t.Fatalf("%s: exit %d: %s", alg, code, errb.String())
		}
		st, err := os.Stat(prefix + ".key")
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s.key: %v %v", alg, st, err)
		}
		pub, err := os.ReadFile(prefix + ".pub")
		if err != nil || !bytes.HasPrefix(pub, []byte("-----BEGIN PUBLIC KEY-----")) {
			t.Fatalf("%s.pub: %q %v", alg, pub, err)
		}
		// A token signed with the private key verifies with the public one
		// only; PARLEY_AUTH_SECRET in the environment does not get in --key's way.
		env := func(k string) string {
			if k == "PARLEY_AUTH_SECRET" {
				return testSecret
			}
			return ""
		}
		out.Reset()
		if code := run([]string{"token", "--key", prefix + ".key", "--room", "r", "--identity", "bea", "--name", "Bea"}, env, &out, &errb); code != 0 {
			t.Fatalf("%s: --key: exit %d: %s", alg, code, errb.String())
		}
		tok := strings.TrimSpace(out.String())
		c, err := verifier(t, auth.Keys{PublicKeys: pub}).Verify(tok, time.Now())
		if err != nil || c.Identity != "bea" || c.Name != "Bea" || !c.Grants.Publish {
			t.Fatalf("%s: %+v %v", alg, c, err)
		}
		if _, err := verifier(t, auth.Keys{Secret: []byte(testSecret)}).Verify(tok, time.Now()); err == nil {
			t.Fatalf("%s: a key-signed token verified with a secret", alg)
		}
		// An existing key is never overwritten.
		errb.Reset()
		if code := run([]string{"token", "keypair", "--alg", alg, "--out", prefix}, noEnv, &out, &errb); code == 0 {
			t.Fatalf("%s: overwrote the key pair", alg)
		}
	}
}
