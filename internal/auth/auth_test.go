package auth

import (
	"errors"
	"testing"
	"time"
)

func TestTokenRoundTrip(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Unix(1_700_000_000, 0)
	tok, err := NewToken(secret, "team-*", "alice", Grants{Publish: true, Subscribe: true}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(secret, tok, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.Identity != "alice" || !c.Grants.Publish || c.Grants.Admin {
		t.Fatalf("claims = %+v", c)
	}
	if !c.AllowsRoom("team-a") || c.AllowsRoom("other") {
		t.Fatal("room pattern not applied")
	}
	if _, err := Verify(secret, tok, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: got %v", err)
	}
	if _, err := Verify([]byte("other"), tok, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("wrong secret: got %v", err)
	}
	for _, bad := range []string{"", "a.b", "a.b.c", tok + "x", "..."} {
		if _, err := Verify(secret, bad, now); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestTURNCredentialMatchesCoturnScheme(t *testing.T) {
	// Known answer: base64(HMAC-SHA1("secret", "1700000000:alice")).
	cred := NewTURNCredential([]byte("secret"), "alice", time.Hour, time.Unix(1699996400, 0))
	if cred.Username != "1700000000:alice" {
		t.Fatalf("username = %q", cred.Username)
	}
	if cred.Password != TURNPassword([]byte("secret"), "1700000000:alice") || len(cred.Password) != 28 {
		t.Fatalf("password = %q", cred.Password)
	}
	exp, user, ok := TURNExpiry(cred.Username)
	if !ok || user != "alice" || exp.Unix() != 1700000000 {
		t.Fatalf("expiry parse: %v %q %v", exp, user, ok)
	}
	if _, _, ok := TURNExpiry("alice"); ok {
		t.Fatal("non-REST username parsed")
	}
}

func FuzzVerify(f *testing.F) {
	secret := []byte("k")
	tok, _ := NewToken(secret, "r", "u", AllGrants, time.Hour, time.Unix(0, 0))
	f.Add(tok)
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Verify(secret, s, time.Unix(10, 0))
	})
}

func FuzzTURNExpiry(f *testing.F) {
	f.Add("1700000000:alice")
	f.Add("x:y")
	f.Fuzz(func(t *testing.T, s string) {
		exp, user, ok := TURNExpiry(s)
		if ok && (exp.Unix() <= 0 || len(user) > len(s)) {
			t.Fatalf("%q parsed as %v %q", s, exp, user)
		}
	})
}
