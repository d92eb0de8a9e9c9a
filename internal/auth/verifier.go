package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Keys are what a server verifies tokens with. Secret is an HS256 shared
// secret; PublicKeys (PEM, ES256 P-256 or Ed25519) and JWKS (a JSON Web
// Key Set) let the application that mints tokens keep the private key.
// Any combination may be given; at least one is needed.
type Keys struct {
	Secret     []byte
	PublicKeys []byte // PEM: one or more "PUBLIC KEY" blocks
	JWKS       []byte // {"keys":[...]}
}

// Verifier checks access tokens against a server's keys. A nil *Verifier
// means auth is off; callers check for nil before verifying.
//
// Each key is bound to the one algorithm of its type: the secret to HS256,
// P-256 keys to ES256, Ed25519 keys to EdDSA. A token is checked only
// against the keys of its header's algorithm, so a token signed with HS256
// using a public key as the secret, or with alg "none", never verifies.
type Verifier struct {
	keys    map[string][]verifyKey // by JWT alg
	methods []string               // the algs keys exist for
}

// verifyKey is one key a token may be signed with; kid is empty for the
// secret and for PEM keys.
type verifyKey struct {
	kid string
	key any // []byte, *ecdsa.PublicKey or ed25519.PublicKey
}

// NewVerifier builds a verifier from keys.
func NewVerifier(k Keys) (*Verifier, error) {
	if len(k.Secret) == 0 && len(k.PublicKeys) == 0 && len(k.JWKS) == 0 {
		return nil, errors.New("auth: no secret or public key to verify tokens with")
	}
	v := &Verifier{keys: map[string][]verifyKey{}}
	if len(k.Secret) > 0 {
		if err := checkSecret(k.Secret); err != nil {
			return nil, err
		}
		v.add(jwt.SigningMethodHS256.Alg(), verifyKey{key: append([]byte(nil), k.Secret...)})
	}
	for _, src := range []struct {
		name  string
		b     []byte
		parse func([]byte) ([]publicKey, error)
	}{{"public keys", k.PublicKeys, parsePublicKeysPEM}, {"jwks", k.JWKS, parseJWKS}} {
		if len(src.b) == 0 {
			continue
		}
		keys, err := src.parse(src.b)
		if err != nil {
			return nil, fmt.Errorf("auth: %s: %w", src.name, err)
		}
		for _, pk := range keys {
			v.add(pk.alg, pk.verifyKey)
		}
	}
	if len(v.methods) == 0 { // WithValidMethods(nil) would allow every alg
		return nil, errors.New("auth: no usable key to verify tokens with")
	}
	return v, nil
}

func (v *Verifier) add(alg string, k verifyKey) {
	if _, ok := v.keys[alg]; !ok {
		v.methods = append(v.methods, alg)
	}
	v.keys[alg] = append(v.keys[alg], k)
}

// Verify checks the token's signature and times (exp is required, nbf is
// honoured) against now and returns its claims. Errors wrap ErrMalformed,
// ErrSignature, ErrExpired or ErrNotYet.
func (v *Verifier) Verify(token string, now time.Time) (Claims, error) {
	if len(token) == 0 || len(token) > MaxTokenLen {
		return Claims{}, ErrMalformed
	}
	p := jwt.NewParser(
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithStrictDecoding(),
	)
	var c Claims
	if _, err := p.ParseWithClaims(token, &c, v.keyFor); err != nil {
		return Claims{}, verifyError(err)
	}
	return c, nil
}

// keyFor picks the keys of the token's algorithm: without a kid, all of
// them; with one, the keys of that id, else those without an id (PEM keys,
// JWKS entries with no kid).
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	keys := v.keys[t.Method.Alg()]
	if t.Method.Alg() == jwt.SigningMethodHS256.Alg() {
		return keys[0].key, nil // HS256 is a valid method only with a secret
	}
	var set jwt.VerificationKeySet
	raw, hasKid := t.Header["kid"]
	kid, ok := raw.(string)
	switch {
	case !hasKid:
		for _, k := range keys {
			set.Keys = append(set.Keys, k.key)
		}
	case !ok:
		return nil, errors.New("kid is not a string")
	default:
		if set = withKid(keys, kid); len(set.Keys) == 0 {
			set = withKid(keys, "")
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no %s key with kid %q", t.Method.Alg(), kid)
	}
	return set, nil
}

func withKid(keys []verifyKey, kid string) jwt.VerificationKeySet {
	var set jwt.VerificationKeySet
	for _, k := range keys {
		if k.kid == kid {
			set.Keys = append(set.Keys, k.key)
		}
	}
	return set
}

// verifyError maps the library's errors onto the package's.
func verifyError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ErrMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return ErrSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrNotYet
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%w: it has no expiry (exp)", ErrMalformed)
	default:
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
}
