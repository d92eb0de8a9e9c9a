// Package auth mints and verifies Parley's access tokens (JWT, HS256) and
// TURN REST credentials (the scheme coturn's use-auth-secret implements).
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
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
// path.Match pattern ("team-*", "*").
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

// MaxTokenLen bounds what Verify will parse.
const MaxTokenLen = 4096

var b64 = base64.RawURLEncoding

const jwtHeader = `{"alg":"HS256","typ":"JWT"}`

// Mint signs claims with secret.
func Mint(secret []byte, c Claims) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	signing := b64.EncodeToString([]byte(jwtHeader)) + "." + b64.EncodeToString(body)
	return signing + "." + b64.EncodeToString(sign(secret, signing)), nil
}

// NewToken is a convenience for Mint with an expiry ttl from now.
func NewToken(secret []byte, room, identity string, g Grants, ttl time.Duration, now time.Time) (string, error) {
	return Mint(secret, Claims{Room: room, Identity: identity, Grants: g,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix()})
}

func sign(secret []byte, s string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// Verify checks the token's signature and times and returns its claims.
func Verify(secret []byte, token string, now time.Time) (Claims, error) {
	var c Claims
	if len(token) == 0 || len(token) > MaxTokenLen {
		return c, ErrMalformed
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, ErrMalformed
	}
	hdrRaw, err := b64.DecodeString(parts[0])
	if err != nil {
		return c, ErrMalformed
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hdrRaw, &hdr) != nil || hdr.Alg != "HS256" {
		return c, ErrMalformed
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return c, ErrMalformed
	}
	if !hmac.Equal(sig, sign(secret, parts[0]+"."+parts[1])) {
		return c, ErrSignature
	}
	body, err := b64.DecodeString(parts[1])
	if err != nil || json.Unmarshal(body, &c) != nil {
		return Claims{}, ErrMalformed
	}
	if c.ExpiresAt == 0 || now.Unix() >= c.ExpiresAt {
		return c, ErrExpired
	}
	if c.NotBefore != 0 && now.Unix() < c.NotBefore {
		return c, ErrNotYet
	}
	return c, nil
}

// AllowsRoom reports whether the claims cover room.
func (c Claims) AllowsRoom(room string) bool {
	if c.Room == "" {
		return false
	}
	ok, err := path.Match(c.Room, room)
	return err == nil && ok
}
