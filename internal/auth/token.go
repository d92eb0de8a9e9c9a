// Package auth mints and verifies Parley's access tokens (JWTs, through
// github.com/golang-jwt/jwt/v5: HS256 with a shared secret, ES256 and EdDSA
// with public keys) and TURN REST credentials (the scheme coturn's
// use-auth-secret implements).
package auth

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Grants say what a token's holder may do in the rooms it names.
type Grants struct {
	Publish   bool `json:"publish,omitempty"`
	Subscribe bool `json:"subscribe,omitempty"`
	Admin     bool `json:"admin,omitempty"`
}

// AllGrants is what an open server (no auth secret) gives everyone.
var AllGrants = Grants{Publish: true, Subscribe: true, Admin: false}

// Claims are the JWT claims Parley reads. Room is a room name or a
// path.Match pattern ("team-*", "*"). Times are Unix seconds.
type Claims struct {
	Room      string `json:"room"`
	Identity  string `json:"sub"`
	Name      string `json:"name,omitempty"` // display name, when the application gives one
	Grants    Grants `json:"grants"`
	ExpiresAt int64  `json:"exp"`
	IssuedAt  int64  `json:"iat,omitempty"`
	NotBefore int64  `json:"nbf,omitempty"`
}

// Errors returned by Verify; callers map them to wire error codes.
var (
	ErrMalformed = errors.New("token is malformed")
	ErrSignature = errors.New("token signature is invalid")
	ErrExpired   = errors.New("token has expired")
	ErrNotYet    = errors.New("token is not valid yet")
	ErrRoom      = errors.New("token does not grant this room")
)

const (
	// MaxTokenLen bounds what Verify will parse.
	MaxTokenLen = 4096
	// MinSecretLen is the shortest HS256 secret Parley signs or verifies
	// with: 32 random bytes cannot be guessed offline from a token.
	MinSecretLen = 32
)

// Mint signs claims with an HS256 secret of at least MinSecretLen bytes.
func Mint(secret []byte, c Claims) (string, error) {
	if err := checkSecret(secret); err != nil {
		return "", err
	}
	return sign(jwt.SigningMethodHS256, secret, "", c)
}

// MintWithKey signs claims with a private key: an ECDSA P-256 key (ES256)
// or an Ed25519 key (EdDSA). A non-empty kid names the key in the token's
// header, for servers that hold several public keys (JWKS).
func MintWithKey(key crypto.Signer, kid string, c Claims) (string, error) {
	alg, err := keyAlg(key.Public())
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	return sign(jwt.GetSigningMethod(alg), key, kid, c)
}

func sign(m jwt.SigningMethod, key any, kid string, c Claims) (string, error) {
	if c.ExpiresAt == 0 {
		return "", errors.New("auth: claims need an expiry (exp)")
	}
	t := jwt.NewWithClaims(m, c)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("auth: sign %s token: %w", m.Alg(), err)
	}
	return s, nil
}

func checkSecret(secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("auth: the secret is %d bytes; at least %d are needed", len(secret), MinSecretLen)
	}
	return nil
}

// NewToken is a convenience for Mint with an expiry ttl from now.
func NewToken(secret []byte, room, identity string, g Grants, ttl time.Duration, now time.Time) (string, error) {
	return Mint(secret, Claims{Room: room, Identity: identity, Grants: g,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix()})
}

// AllowsRoom reports whether the claims cover room.
func (c Claims) AllowsRoom(room string) bool {
	if c.Room == "" {
		return false
	}
	ok, err := path.Match(c.Room, room)
	return err == nil && ok
}

// UnmarshalJSON reads the times as JWT NumericDates: applications that
// mint tokens may write them with a fraction ("iat": 1700000000.25),
// which is cut to whole seconds.
func (c *Claims) UnmarshalJSON(b []byte) error {
	type plain Claims // without this method
	var aux struct {
		plain
		ExpiresAt *jwt.NumericDate `json:"exp"`
		IssuedAt  *jwt.NumericDate `json:"iat"`
		NotBefore *jwt.NumericDate `json:"nbf"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*c = Claims(aux.plain)
	c.ExpiresAt, c.IssuedAt, c.NotBefore = unix(aux.ExpiresAt), unix(aux.IssuedAt), unix(aux.NotBefore)
	return nil
}

func unix(d *jwt.NumericDate) int64 {
	if d == nil {
		return 0
	}
	return d.Unix()
}

// The jwt.Claims methods let the library check exp and nbf itself.

// GetExpirationTime implements jwt.Claims.
func (c Claims) GetExpirationTime() (*jwt.NumericDate, error) { return numericDate(c.ExpiresAt), nil }

// GetIssuedAt implements jwt.Claims.
func (c Claims) GetIssuedAt() (*jwt.NumericDate, error) { return numericDate(c.IssuedAt), nil }

// GetNotBefore implements jwt.Claims.
func (c Claims) GetNotBefore() (*jwt.NumericDate, error) { return numericDate(c.NotBefore), nil }

// GetIssuer implements jwt.Claims; Parley does not read iss.
func (c Claims) GetIssuer() (string, error) { return "", nil }

// GetSubject implements jwt.Claims.
func (c Claims) GetSubject() (string, error) { return c.Identity, nil }

// GetAudience implements jwt.Claims; Parley does not read aud.
func (c Claims) GetAudience() (jwt.ClaimStrings, error) { return nil, nil }

// numericDate is nil for 0: the claim is absent.
func numericDate(unix int64) *jwt.NumericDate {
	if unix == 0 {
		return nil
	}
	return jwt.NewNumericDate(time.Unix(unix, 0))
}
