package auth

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST scheme is defined with HMAC-SHA1
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// TURNCredential is a time-limited username/password pair in the TURN REST
// scheme: username "<expiry-unix>:<user>", password
// base64(HMAC-SHA1(secret, username)). coturn's use-auth-secret checks the
// same pair, so operators can swap in coturn with the same secret.
type TURNCredential struct {
	Username string
	Password string
	Expires  time.Time
}

// NewTURNCredential makes a credential for user valid for ttl from now.
func NewTURNCredential(secret []byte, user string, ttl time.Duration, now time.Time) TURNCredential {
	exp := now.Add(ttl)
	username := strconv.FormatInt(exp.Unix(), 10) + ":" + user
	return TURNCredential{Username: username, Password: TURNPassword(secret, username), Expires: exp}
}

// TURNPassword is base64(HMAC-SHA1(secret, username)).
func TURNPassword(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// TURNExpiry parses the expiry out of a REST username; ok is false when the
// username is not in the scheme. coturn accepts "<expiry>" alone or
// "<expiry>:<user>"; so do we.
func TURNExpiry(username string) (exp time.Time, user string, ok bool) {
	ts, user, _ := strings.Cut(username, ":")
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, "", false
	}
	return time.Unix(n, 0), user, true
}
