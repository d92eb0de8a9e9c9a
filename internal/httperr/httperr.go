// Package httperr writes Parley's HTTP error answers: a JSON body
// {"error":{"code":..,"message":..}} and, for access-token failures, the
// WWW-Authenticate header of RFC 6750 (Bearer tokens). The server, WHIP/WHEP
// and the light shows answer through it, so a client sees one format.
package httperr

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Error codes shared by every endpoint.
const (
	// CodeUnauthorized answers 401: no token, or a token that does not
	// verify (expired, bad signature, malformed).
	CodeUnauthorized = "unauthorized"
	// CodeInsufficientScope answers 403: a valid token that lacks the
	// grant or room the request needs.
	CodeInsufficientScope = "insufficient_scope"
	// CodeTooManyRequests answers 429: a per-client limit was reached.
	CodeTooManyRequests = "too_many_requests"
	// CodeForbiddenOrigin answers 403: the request came from a web page
	// whose origin may not use this server.
	CodeForbiddenOrigin = "forbidden_origin"
	// CodeWebRTCViewerLimit answers 503 to a WHEP viewer past the stream's
	// cap on WebRTC viewers (--max-webrtc-viewers): the stream is live,
	// and players should read it over HLS instead (the watch page does).
	CodeWebRTCViewerLimit = "webrtc_viewer_limit"
)

// Realm is the realm of Parley's WWW-Authenticate challenges.
const Realm = "parley"

var (
	// ErrNoToken marks an authorization error where the request carried no
	// token at all (RFC 6750 §3.1: the challenge then names no error).
	ErrNoToken = errors.New("a token is required")
	// ErrInsufficientScope marks an authorization error where the token is
	// valid but does not grant what was asked: 403, not 401.
	ErrInsufficientScope = errors.New("insufficient scope")
)

// Body is the JSON error body.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is the "error" object; Offered and Supported list codecs in
// WHIP/WHEP's unsupported_codec answers.
type Detail struct {
	Code      string   `json:"code"`
	Message   string   `json:"message"`
	Offered   []string `json:"offered,omitempty"`
	Supported []string `json:"supported,omitempty"`
}

// Write answers status with {"error":{"code":code,"message":msg}}.
func Write(w http.ResponseWriter, status int, code, msg string) {
	WriteBody(w, status, Body{Error: Detail{Code: code, Message: msg}})
}

// WriteBody answers status with b as JSON.
func WriteBody(w http.ResponseWriter, status int, b Body) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b)
}

// Auth answers an authorization failure as RFC 6750 asks: a valid token
// lacking the grant (err wraps ErrInsufficientScope) gets 403 with
// error="insufficient_scope"; a missing token (err wraps ErrNoToken) 401
// with a bare Bearer challenge; any other token error 401 with
// error="invalid_token". A *Denied (an address list or a hook refused)
// gets 403 with its own code and no challenge.
func Auth(w http.ResponseWriter, err error) {
	var d *Denied
	switch {
	case errors.As(err, &d):
		Write(w, http.StatusForbidden, d.Code, d.Message)
	case errors.Is(err, ErrInsufficientScope):
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+Realm+`", error="insufficient_scope"`)
		Write(w, http.StatusForbidden, CodeInsufficientScope, err.Error())
	case errors.Is(err, ErrNoToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+Realm+`"`)
		Write(w, http.StatusUnauthorized, CodeUnauthorized, err.Error())
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+Realm+`", error="invalid_token"`)
		Write(w, http.StatusUnauthorized, CodeUnauthorized, err.Error())
	}
}

// TooMany answers 429 with Retry-After (whole seconds, at least 1).
func TooMany(w http.ResponseWriter, retry time.Duration, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retry.Round(time.Second)/time.Second))))
	Write(w, http.StatusTooManyRequests, CodeTooManyRequests, msg)
}

// Denied is a refusal that is not about the token (a CIDR list, a
// webhook): Auth answers it 403 with its own Code.
type Denied struct {
	Code, Message string
}

func (d *Denied) Error() string { return d.Message }
