package camera

import (
	"errors"
	"fmt"
	"strings"

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
		track errNoTrack
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &track):
		return track.Error()
	case errors.As(err, new(liberrors.ErrClientRequestTimedOut)):
		return "timed out"
	case errors.As(err, &bad):
		return fmt.Sprintf("%d %s", int(bad.Code), strings.ToLower(bad.Message))
	}
	// Network errors without the addresses: viewers see the reason, not
	// where the camera is.
	if r, ok := redact.NetReason(err, "the camera", source); ok {
		return r
	}
	return redact.Text(err.Error(), source)
}
