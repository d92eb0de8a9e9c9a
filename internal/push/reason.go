package push

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/parley/parley/internal/redact"
	"github.com/parley/parley/internal/tap"
)

// Reason puts a push's failure in words for its status ("connection
// refused", "timed out", "refused by the destination: …"), without the
// URL's secrets.
func Reason(err error, raw string) string {
	var (
		cc cannotCarry
		se streamError
		ce *tls.CertificateVerificationError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &cc):
		return cc.Error()
	case errors.As(err, &se):
		return "the stream cannot be read: " + redact.Text(se.err.Error(), raw)
	case errors.As(err, &ce):
		return "the destination's TLS certificate is not trusted: " + redact.Text(ce.Err.Error(), raw)
	}
	msg := err.Error()
	if r := rtmpRefusal(msg); r != "" {
		return redact.Text("refused by the destination: "+r, raw)
	}
	// gosrt's dial errors are plain texts.
	if _, r, ok := strings.Cut(msg, "connection rejected: "); ok {
		return "refused by the destination: " + srtRejection(r)
	}
	if strings.Contains(msg, "server didn't respond") {
		return "timed out (no SRT listener answered)"
	}
	if r, ok := redact.NetReason(err, "the destination", raw); ok {
		return r
	}
	return redact.Text(msg, raw)
}

// rtmpRefusal finds the status code and description in gortmplib's
// "bad result: &{… [{level error} {code X} {description Y}]}" errors.
func rtmpRefusal(msg string) string {
	if !strings.Contains(msg, "bad result") {
		return ""
	}
	field := func(key string) string {
		_, v, ok := strings.Cut(msg, "{"+key+" ")
		if !ok {
			return ""
		}
		v, _, _ = strings.Cut(v, "}")
		return v
	}
	code, desc := field("code"), field("description")
	switch {
	case code != "" && desc != "":
		return code + " (" + desc + ")"
	case code != "":
		return code
	}
	return "the publish was refused"
}

// cannotCarry: the stream has no track the destination's protocol takes.
type cannotCarry struct {
	proto  string
	tracks []tap.Track
}

func (e cannotCarry) Error() string {
	var names []string
	for _, t := range e.tracks {
		names = append(names, t.Codec)
	}
	return fmt.Sprintf("%s cannot carry this stream's tracks (%s)", e.proto, strings.Join(names, ", "))
}

// streamError: the stream is live but its reader could not start.
type streamError struct{ err error }

func (e streamError) Error() string { return "reading the stream: " + e.err.Error() }
func (e streamError) Unwrap() error { return e.err }

// srtRejections words SRT's rejection codes (the SRT library's REJ_ and
// REJX_ reasons) a listener answers a caller with.
var srtRejections = map[uint64]string{
	1000: "unknown reason", 1001: "system error", 1002: "peer rejected", 1003: "resources",
	1004: "rogue peer", 1005: "backlog full", 1006: "internal error", 1007: "listener closing",
	1008: "SRT version", 1009: "rendezvous cookie", 1010: "wrong passphrase", 1011: "encryption required or refused",
	1012: "message API", 1013: "congestion control", 1014: "packet filter", 1015: "group", 1016: "timed out",
	1400: "bad request (streamid)", 1401: "unauthorized", 1402: "too many connections", 1403: "forbidden",
	1404: "not found", 1405: "bad mode", 1406: "unacceptable", 1407: "busy (the stream has a publisher)",
	1415: "unsupported media", 1423: "locked", 1500: "internal server error", 1501: "not implemented",
	1502: "gateway error", 1503: "service unavailable", 1505: "SRT version not supported",
}

// srtRejection reads gosrt's "REJECT (<code in base 32>)" as "SRT 1401 unauthorized".
func srtRejection(s string) string {
	b32, ok := strings.CutPrefix(s, "REJECT (")
	if !ok {
		return s
	}
	code, err := strconv.ParseUint(strings.TrimSuffix(b32, ")"), 32, 32)
	if err != nil {
		return s
	}
	if words, ok := srtRejections[code]; ok {
		return fmt.Sprintf("SRT %d %s", code, words)
	}
	return fmt.Sprintf("SRT %d", code)
}
