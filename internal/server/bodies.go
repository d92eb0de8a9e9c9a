package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/httperr"
)

// maxRequestBody bounds every request body on the main port; the
// endpoints bound theirs more tightly (WHIP offers, signaling messages,
// show broadcasts). Larger signaling messages are allowed when
// --max-message asks for them.
const maxRequestBody = 1 << 20

// codeRequestTimeout answers 408: the body did not arrive in time.
const codeRequestTimeout = "request_timeout"

// bodyLimits gives every request that carries a body --body-timeout to
// deliver it, so a client trickling a byte a second cannot hold a
// connection and a handler: the connection's read deadline is set when the
// handler starts and lifted as soon as the body has been read (the handler
// may take longer to answer). A body cut off by the deadline gets 408 and
// the connection is closed. WebSocket upgrades and long-poll waits carry
// no body and keep their own deadlines (the WebSocket's pings, the poll
// timeout).
func (s *Server) bodyLimits(next http.Handler) http.Handler {
	timeout := s.cfg.BodyTimeout.D()
	limit := int64(max(maxRequestBody, 2*s.cfg.MaxMessage))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			s.log.Debug("body deadline not set", "path", r.URL.Path, "err", err)
		}
		b := &deadlineBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit), rc: rc}
		r.Body = b
		next.ServeHTTP(&bodyWriter{ResponseWriter: w, body: b, timeout: timeout}, r)
	})
}

// deadlineBody lifts the read deadline once the body is read, and notes
// whether the deadline cut it off.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	lift     sync.Once
	timedOut atomic.Bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.lift.Do(func() { _ = b.rc.SetReadDeadline(time.Time{}) })
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.timedOut.Store(true)
	}
	return n, err
}

// bodyWriter replaces the handler's error answer to a body cut off by the
// deadline (typically "400 reading body: i/o timeout") with 408.
type bodyWriter struct {
	http.ResponseWriter
	body     *deadlineBody
	timeout  time.Duration
	replaced bool
}

func (w *bodyWriter) WriteHeader(code int) {
	switch {
	case w.replaced:
	case code >= 400 && w.body.timedOut.Load():
		w.replaced = true
		h := w.Header()
		for _, k := range []string{"Content-Type", "Content-Length", "Location", "ETag"} {
			h.Del(k)
		}
		h.Set("Connection", "close")
		httperr.Write(w.ResponseWriter, http.StatusRequestTimeout, codeRequestTimeout,
			fmt.Sprintf("the request body did not arrive within %v", w.timeout))
	default:
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *bodyWriter) Write(p []byte) (int, error) {
	if w.replaced {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *bodyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
