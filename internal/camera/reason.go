package camera

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/parley/parley/internal/redact"
)

// Reason puts a pull's failure in words for the status ("connection
// refused", "timed out", "401 unauthorized", "no supported track (…)"),
// without the source's password or the camera's address (the watch page
// shows it to viewers; the log has the whole error).
func Reason(err error, source string) string {
	var (
		bad   liberrors.ErrClientBadStatusCode
		dns   *net.DNSError
		nerr  net.Error
		track errNoTrack
		op    *net.OpError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &track):
		return track.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the camera"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &dns):
		return "host not found"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout(), errors.As(err, new(liberrors.ErrClientRequestTimedOut)):
		return "timed out"
	case errors.As(err, &bad):
		return fmt.Sprintf("%d %s", int(bad.Code), strings.ToLower(bad.Message))
	case errors.As(err, &op) && op.Err != nil:
		// Without the addresses: viewers see the reason, not where the camera is.
		return "network error: " + redact.Text(op.Err.Error(), source)
	}
	return redact.Text(err.Error(), source)
}
