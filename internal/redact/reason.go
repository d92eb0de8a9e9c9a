package redact

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// NetReason words the network failures every client meets, for a status
// people read: "connection refused", "connection closed by <peer>",
// "host unreachable", "host not found", "timed out", or "network error:
// …" without the addresses (the peer's address may be private) and
// without raw's secrets. ok is false for other errors.
func NetReason(err error, peer, raw string) (reason string, ok bool) {
	var (
		dns  *net.DNSError
		nerr net.Error
		op   *net.OpError
	)
	switch {
	case err == nil:
		return "", false
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by " + peer, true
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable", true
	case errors.As(err, &dns):
		return "host not found", true
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout():
		return "timed out", true
	case errors.As(err, &op) && op.Err != nil:
		return "network error: " + Text(op.Err.Error(), raw), true
	}
	return "", false
}
