package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes

func hsVerifier(t testing.TB, secret []byte) *Verifier {
	t.Helper()
	v, err := NewVerifier(Keys{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenRoundTrip(t *testing.T) {
	v := hsVerifier(t, testSecret)
	now := time.Unix(1_700_000_000, 0)
	tok, err := NewToken(testSecret, "team-*", "alice", Grants{Publish: true, Subscribe: true}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.Identity != "alice" || !c.Grants.Publish || c.Grants.Admin {
		t.Fatalf("claims = %+v", c)
	}
	if !c.AllowsRoom("team-a") || c.AllowsRoom("other") {
		t.Fatal("room pattern not applied")
	}
	if _, err := v.Verify(tok, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: got %v", err)
	}
	other := hsVerifier(t, bytes.Repeat([]byte("o"), 32))
	if _, err := other.Verify(tok, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("wrong secret: got %v", err)
	}
	for _, bad := range []string{"", "a.b", "a.b.c", tok + "x", "...", strings.Repeat("a", MaxTokenLen+1)} {
		if _, err := v.Verify(bad, now); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
	if _, err := v.Verify(tok+strings.Repeat("A", MaxTokenLen), now); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized token: %v", err)
	}
}

func TestNameClaimAndTimes(t *testing.T) {
	v := hsVerifier(t, testSecret)
	now := time.Unix(1_700_000_000, 0)
	tok, err := Mint(testSecret, Claims{Room: "r", Identity: "u1", Name: "Ann Example", ExpiresAt: now.Unix() + 60, NotBefore: now.Unix() + 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok, now); !errors.Is(err, ErrNotYet) {
		t.Fatalf("before nbf: %v", err)
	}
	c, err := v.Verify(tok, now.Add(10*time.Second))
	if err != nil || c.Name != "Ann Example" || c.Identity != "u1" {
		t.Fatalf("at nbf: %+v %v", c, err)
	}
	if _, err := v.Verify(tok, now.Add(60*time.Second)); !errors.Is(err, ErrExpired) {
		t.Fatalf("at exp: %v", err)
	}
	// exp is required: a token without one, correctly signed, is refused.
	noExp, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"room": "r", "sub": "u"}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(noExp, now); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no exp: %v", err)
	}
	if _, err := Mint(testSecret, Claims{Room: "r"}); err == nil {
		t.Fatal("minted a token without exp")
	}
	// Other minting libraries may write times with fractions.
	frac, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"room": "r", "sub": "u",
		"iat": float64(now.Unix()) + 0.25, "exp": float64(now.Unix()) + 60.75}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(frac, now); err != nil || c.ExpiresAt != now.Unix()+60 || c.IssuedAt != now.Unix() {
		t.Fatalf("fractional times: %+v %v", c, err)
	}
	for _, bad := range []string{`"soon"`, `true`, `[1]`} {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"room": "r", "exp": json.RawMessage(bad)})
		s, err := tok.SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(s, now); !errors.Is(err, ErrMalformed) {
			t.Fatalf("exp %s: %v", bad, err)
		}
	}
}

func TestShortSecretRefused(t *testing.T) {
	short := []byte("s3cret")
	if _, err := NewVerifier(Keys{Secret: short}); err == nil {
		t.Fatal("verifier with a 6-byte secret")
	}
	if _, err := NewToken(short, "r", "u", AllGrants, time.Hour, time.Now()); err == nil {
		t.Fatal("minted with a 6-byte secret")
	}
	if _, err := NewVerifier(Keys{}); err == nil {
		t.Fatal("verifier with no keys")
	}
}

// testKeys are an Ed25519 and a P-256 key with their public halves as PEM.
type testKeys struct {
	ed, ec crypto.Signer
	pem    []byte // both public keys
}

func newTestKeys(t testing.TB) testKeys {
	t.Helper()
	var k testKeys
	for _, alg := range []string{AlgEd25519, AlgES256} {
		s, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		_, pub, err := EncodeKeyPair(s)
		if err != nil {
			t.Fatal(err)
		}
		k.pem = append(k.pem, pub...)
		if alg == AlgEd25519 {
			k.ed = s
		} else {
			k.ec = s
		}
	}
	return k
}

// jwkOf is the JWK of a public key.
func jwkOf(t testing.TB, pub crypto.PublicKey, kid string) map[string]string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	switch p := pub.(type) {
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(p), "kid": kid}
	case *ecdsa.PublicKey:
		b, err := p.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"kty": "EC", "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:]), "kid": kid, "alg": "ES256", "use": "sig"}
	}
	t.Fatalf("no JWK for %T", pub)
	return nil
}

func jwks(t testing.TB, keys ...map[string]string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublicKeys(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	claims := Claims{Room: "r", Identity: "bob", Name: "Bob", Grants: AllGrants, ExpiresAt: now.Unix() + 60}
	k := newTestKeys(t)
	stranger := newTestKeys(t)
	v, err := NewVerifier(Keys{PublicKeys: k.pem})
	if err != nil {
		t.Fatal(err)
	}
	for _, signer := range []crypto.Signer{k.ed, k.ec} {
		tok, err := MintWithKey(signer, "", claims)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := v.Verify(tok, now); err != nil || c != claims {
			t.Errorf("%T: %+v %v", signer, c, err)
		}
	}
	for _, signer := range []crypto.Signer{stranger.ed, stranger.ec} {
		tok, _ := MintWithKey(signer, "", claims)
		if _, err := v.Verify(tok, now); !errors.Is(err, ErrSignature) {
			t.Errorf("stranger's %T key: %v", signer, err)
		}
	}
	// Algorithm confusion: HS256 keyed with the public key, and alg none.
	der, _ := pem.Decode(k.pem)
	for _, key := range [][]byte{k.pem, der.Bytes} {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok, now); !errors.Is(err, ErrSignature) {
			t.Errorf("HS256 with the public key accepted: %v", err)
		}
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if _, err := v.Verify(none, now); !errors.Is(err, ErrSignature) {
		t.Errorf("alg none: %v", err)
	}
	// A secret-only verifier does not take public-key tokens, and the
	// reverse.
	hs := hsVerifier(t, testSecret)
	edTok, _ := MintWithKey(k.ed, "", claims)
	if _, err := hs.Verify(edTok, now); !errors.Is(err, ErrSignature) {
		t.Errorf("EdDSA token on an HS256 verifier: %v", err)
	}
	hsTok, _ := Mint(testSecret, claims)
	if _, err := v.Verify(hsTok, now); !errors.Is(err, ErrSignature) {
		t.Errorf("HS256 token on a public-key verifier: %v", err)
	}
	// Both at once.
	both, err := NewVerifier(Keys{Secret: testSecret, PublicKeys: k.pem})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{edTok, hsTok} {
		if _, err := both.Verify(tok, now); err != nil {
			t.Errorf("secret+keys verifier: %v", err)
		}
	}
}

func TestJWKSSelectsByKid(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	claims := Claims{Room: "r", Identity: "carol", ExpiresAt: now.Unix() + 60}
	a, b := newTestKeys(t), newTestKeys(t)
	set := jwks(t, jwkOf(t, a.ed.Public(), "a-ed"), jwkOf(t, a.ec.Public(), "a-ec"), jwkOf(t, b.ed.Public(), ""),
		map[string]string{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"}, // skipped, not refused
		map[string]string{"kty": "OKP", "crv": "X25519", "x": "AAAA"})
	v, err := NewVerifier(Keys{JWKS: set})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key  crypto.Signer
		kid  string
		want error
	}{
		{a.ed, "a-ed", nil},
		{a.ec, "a-ec", nil},
		{a.ed, "", nil},                 // no kid: every EdDSA key is tried
		{b.ed, "", nil},                 // the key with no kid
		{b.ed, "unknown", nil},          // unknown kid: falls back to keys without a kid
		{a.ed, "unknown", ErrSignature}, // ... which a's is not
		{b.ed, "a-ed", ErrSignature},    // kid names another key
		{b.ec, "a-ec", ErrSignature},
		{b.ec, "", ErrSignature},
	}
	for _, c := range cases {
		tok, err := MintWithKey(c.key, c.kid, claims)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok, now); !errors.Is(err, c.want) {
			t.Errorf("%T kid %q: got %v, want %v", c.key, c.kid, err, c.want)
		}
	}
}

func TestBadKeysRefused(t *testing.T) {
	k := newTestKeys(t)
	priv, _, _ := EncodeKeyPair(k.ed)
	for name, keys := range map[string]Keys{
		"private key as public": {PublicKeys: priv},
		"no PEM":                {PublicKeys: []byte("hello")},
		"certificate block":     {PublicKeys: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")},
		"not JSON":              {JWKS: []byte("{")},
		"empty set":             {JWKS: []byte(`{"keys":[]}`)},
		"only RSA":              {JWKS: []byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`)},
		"short x":               {JWKS: []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`)},
		"off curve":             {JWKS: jwks(t, map[string]string{"kty": "EC", "crv": "P-256", "x": strings.Repeat("A", 43), "y": strings.Repeat("A", 43)})},
	} {
		if _, err := NewVerifier(keys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParsePrivateKey(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	k := newTestKeys(t)
	v, err := NewVerifier(Keys{PublicKeys: k.pem})
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(k.ec.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	sec1 = append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), sec1...)
	edPKCS8, _, _ := EncodeKeyPair(k.ed)
	for name, p := range map[string][]byte{"sec1": sec1, "pkcs8": edPKCS8} {
		s, err := ParsePrivateKey(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tok, err := MintWithKey(s, "", Claims{Room: "r", ExpiresAt: now.Unix() + 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok, now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ParsePrivateKey(k.pem); err == nil {
		t.Error("public keys parsed as a private key")
	}
	if _, err := ParsePrivateKey([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("encrypted key: %v", err)
	}
	if _, err := GenerateKey("rsa"); err == nil {
		t.Error("rsa key generated")
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

// padSecret makes a fuzzed secret long enough to be accepted.
func padSecret(b []byte) []byte {
	return append(append([]byte(nil), b...), make([]byte, MinSecretLen)...)
}

// hmacKey is the key HMAC-SHA256 really uses (RFC 2104): keys longer than
// the 64-byte block are hashed, shorter ones padded with zeros, so k and
// k||0x00 are one key. Two secrets are the same key when these are equal.
func hmacKey(k []byte) []byte {
	if len(k) > 64 {
		h := sha256.Sum256(k)
		k = h[:]
	}
	return bytes.TrimRight(k, "\x00")
}

// FuzzVerify mints tokens from fuzzed secrets and claims and checks that
// a token verifies only with the key it was signed with (and then yields
// the claims it was minted with), that alg none and HS256 keyed with the
// public key never pass a public-key verifier, and that fuzzed text never
// verifies at all.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	keys := newTestKeys(f)
	stranger := newTestKeys(f)
	pubV, err := NewVerifier(Keys{PublicKeys: keys.pem})
	if err != nil {
		f.Fatal(err)
	}
	strangerV, err := NewVerifier(Keys{PublicKeys: stranger.pem})
	if err != nil {
		f.Fatal(err)
	}
	fixedV := hsVerifier(f, testSecret)
	seed, _ := NewToken(testSecret, "r", "u", AllGrants, time.Hour, time.Unix(0, 0)) // long expired
	f.Add([]byte("k"), []byte("l"), "team-*", "alice", "Alice", uint8(3), uint32(60), seed)
	f.Add([]byte{}, []byte{0}, "*", "", "", uint8(0), uint32(0), "e30.e30.")
	f.Add([]byte("same"), []byte("same"), "a/b", "x", "é", uint8(7), uint32(1<<31), `eyJhbGciOiJub25lIn0.e30.`)
	f.Fuzz(func(t *testing.T, secret, other []byte, room, sub, name string, grants uint8, ttl uint32, garbage string) {
		for _, s := range []string{room, sub, name} {
			if !utf8.ValidString(s) {
				return // JSON would replace invalid bytes: claims could not round-trip
			}
		}
		c := Claims{Room: room, Identity: sub, Name: name,
			Grants:   Grants{Publish: grants&1 != 0, Subscribe: grants&2 != 0, Admin: grants&4 != 0},
			IssuedAt: now.Unix(), ExpiresAt: now.Unix() + int64(ttl) + 1}
		sa, sb := padSecret(secret), padSecret(other)
		tok, err := Mint(sa, c)
		if err != nil {
			t.Fatalf("mint: %v", err)
		}
		va, vb := hsVerifier(t, sa), hsVerifier(t, sb)
		if len(tok) > MaxTokenLen {
			if _, err := va.Verify(tok, now); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%d-byte token: %v", len(tok), err)
			}
			return
		}
		got, err := va.Verify(tok, now)
		if err != nil || got != c {
			t.Fatalf("right secret: %+v %v, minted %+v", got, err, c)
		}
		if !bytes.Equal(hmacKey(sa), hmacKey(sb)) {
			if got, err := vb.Verify(tok, now); !errors.Is(err, ErrSignature) {
				t.Fatalf("verified with another secret: %+v %v", got, err)
			}
		}
		if _, err := pubV.Verify(tok, now); !errors.Is(err, ErrSignature) {
			t.Fatalf("HS256 token passed a public-key verifier: %v", err)
		}
		// Algorithm confusion against the public-key verifier.
		for _, key := range [][]byte{keys.pem, sa} {
			forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pubV.Verify(forged, now); err == nil {
				t.Fatal("HS256 keyed with the public key verified")
			}
		}
		none, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []*Verifier{pubV, va} {
			if _, err := v.Verify(none, now); err == nil {
				t.Fatal("alg none verified")
			}
		}
		// The private key's tokens: its own public key only.
		signer := keys.ed
		if grants&8 != 0 {
			signer = keys.ec
		}
		signed, err := MintWithKey(signer, "", c)
		if err != nil {
			t.Fatal(err)
		}
		if len(signed) <= MaxTokenLen {
			if got, err := pubV.Verify(signed, now); err != nil || got != c {
				t.Fatalf("public key: %+v %v", got, err)
			}
		}
		if _, err := strangerV.Verify(signed, now); err == nil {
			t.Fatal("verified with a stranger's public key")
		}
		if _, err := va.Verify(signed, now); err == nil {
			t.Fatal("public-key token verified with a secret")
		}
		// Fuzzed text: nothing the fuzzer writes carries a valid signature.
		for _, v := range []*Verifier{pubV, va, fixedV} {
			if got, err := v.Verify(garbage, now); err == nil {
				t.Fatalf("garbage %q verified: %+v", garbage, got)
			}
		}
	})
}

// matchRef is a reference for path.Match without character classes: '*'
// is any run of bytes other than '/', '?' one rune other than '/', '\'
// quotes the next byte; ok is false for a pattern ending in a lone '\'.
func matchRef(pattern, name string) (match, ok bool) {
	// reach[i] reports whether name[:i] is matched by the pattern so far.
	reach := make([]bool, len(name)+1)
	reach[0] = true
	for p := 0; p < len(pattern); p++ {
		next := make([]bool, len(name)+1)
		switch pattern[p] {
		case '*':
			for i := 0; i <= len(name); i++ {
				if reach[i] {
					for j := i; ; j++ {
						next[j] = true
						if j == len(name) || name[j] == '/' {
							break
						}
					}
				}
			}
		case '?':
			for i := 0; i < len(name); i++ {
				if reach[i] && name[i] != '/' {
					_, n := utf8.DecodeRuneInString(name[i:])
					next[i+n] = true
				}
			}
		default:
			if pattern[p] == '\\' {
				p++
				if p == len(pattern) {
					return false, false
				}
			}
			for i := 0; i < len(name); i++ {
				if reach[i] && name[i] == pattern[p] {
					next[i+1] = true
				}
			}
		}
		reach = next
	}
	return reach[len(name)], true
}

// FuzzAllowsRoom checks that room patterns never match outside their
// pattern: against the reference matcher, and directly for literal names
// and "prefix-*" patterns.
func FuzzAllowsRoom(f *testing.F) {
	for _, s := range [][2]string{{"team-*", "team-a"}, {"team-*", "team-a/b"}, {"*", ""}, {"a?c", "abc"}, {`a\*`, "a*"},
		{"", ""}, {"x", "x"}, {"[a-c]x", "bx"}, {"é?", "éé"}, {"a\\", "a"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, room string) {
		got := Claims{Room: pattern}.AllowsRoom(room)
		meta := strings.ContainsAny(pattern, `*?[\`)
		switch {
		case pattern == "":
			if got {
				t.Fatalf("empty pattern matched %q", room)
			}
		case !meta:
			if got != (room == pattern) {
				t.Fatalf("literal %q vs %q: %v", pattern, room, got)
			}
		case strings.HasSuffix(pattern, "*") && !strings.ContainsAny(pattern[:len(pattern)-1], `*?[\`):
			prefix := pattern[:len(pattern)-1]
			want := strings.HasPrefix(room, prefix) && !strings.Contains(room[len(prefix):], "/")
			if got != want {
				t.Fatalf("%q vs %q: %v, want %v", pattern, room, got, want)
			}
		}
		if i := strings.IndexAny(pattern, `*?[\`); got && i >= 0 && !strings.HasPrefix(room, pattern[:i]) {
			t.Fatalf("%q matched %q, which lacks its literal prefix", pattern, room)
		}
		if pattern != "" && !strings.Contains(pattern, "[") {
			want, ok := matchRef(pattern, room)
			if got != (want && ok) {
				t.Fatalf("%q vs %q: AllowsRoom %v, reference %v (pattern ok %v)", pattern, room, got, want, ok)
			}
		}
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
