package signal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/parley/parley/pkg/protocol"
)

// finalWriteTimeout bounds the last frames written to a failing session.
// Ordinary writes need no timer of their own: a peer that stops reading
// also stops answering pings, and the pinger closes the connection, which
// ends a stuck write.
const finalWriteTimeout = 2 * time.Second

// ServeWS upgrades the request and runs one signaling session until the
// connection ends. The handler's goroutine reads; one writer goroutine,
// owned by it, writes and pings.
func (h *Hub) ServeWS(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); !h.opts.Origins.Allowed(o) {
		httpError(w, http.StatusForbidden, protocol.CodeForbidden, "pages from "+o+" may not use this server (see --public-host and --allow-origins)")
		return
	}
	// The origin is judged above against the server's own names; the
	// library's own check would trust the request's Host header.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled, InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the request
	}
	// Messages up to 4x the limit are read and refused with an error;
	// beyond that the library closes with 1009 (message too big).
	c.SetReadLimit(int64(h.opts.MaxMessage) * 4)
	s := h.newSession(HostOf(r), h.clientOf(r))
	if err := h.register(s); err != nil {
		ref := err.(*refusal)
		msg := mustJSON(protocol.ErrorMessage(ref.code, ref.msg))
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		_ = c.Write(ctx, websocket.MessageText, msg)
		cancel()
		status := websocket.StatusTryAgainLater
		if ref == errShuttingDown {
			status = websocket.StatusGoingAway
		}
		c.Close(status, ref.code)
		return
	}
	for s != nil {
		s = h.serveWS(c, s)
	}
}

// serveWS runs s on c until the connection ends (then it returns nil) or
// a resume on it took over another session, which it returns, s having
// ended: the connection serves that one next.
func (h *Hub) serveWS(c *websocket.Conn, s *session) *session {
	writerDone := make(chan struct{})
	s.timerMu.Lock()
	s.abort = func() {
		select {
		case <-writerDone:
		default:
			c.CloseNow() // ends a stuck write, and with it the session
		}
	}
	s.timerMu.Unlock()
	h.attach(s, func() { c.CloseNow() })
	ctx, cancel := context.WithCancel(h.ctx)
	handover := make(chan struct{})
	go func() {
		defer close(writerDone)
		for _, b := range append([][]byte{s.greeting, s.carry}, s.again...) {
			if b == nil {
				continue
			}
			if err := c.Write(ctx, websocket.MessageText, b); err != nil {
				c.CloseNow()
				return
			}
		}
		s.greeting, s.carry, s.again = nil, nil, nil
		h.writeLoop(ctx, handover, c, s)
	}()
	next, err := h.readLoop(c, s)
	if next != nil {
		close(handover) // the writer stops, the connection stays
	} else {
		cancel() // the writer closes the connection and stops
	}
	<-writerDone
	cancel()
	if next != nil {
		h.mu.Lock() // the connection's slot (its client's) goes with it
		s.release, next.release = next.release, s.release
		h.mu.Unlock()
		h.finish(s)
		return next
	}
	if websocket.CloseStatus(err) != -1 || errors.Is(err, errOversized) {
		h.finish(s) // the client closed (it left), or broke the rules
	} else {
		h.connEnded(s) // the connection broke: the member may resume
	}
	return nil
}

var errOversized = errors.New("message over the hard limit")

// readLoop reads until the connection fails. Its reads take no context:
// one with a Done channel costs coder/websocket an AfterFunc per message,
// and the writer closes the connection when the session must end, which
// ends the read just as well.
func (h *Hub) readLoop(c *websocket.Conn, s *session) (next *session, err error) {
	limit := int64(h.opts.MaxMessage)
	var buf bytes.Buffer // reused: handle copies whatever it keeps
	lr := &io.LimitedReader{}
	for {
		typ, rd, err := c.Reader(context.Background())
		if err != nil {
			return nil, err
		}
		buf.Reset()
		lr.R, lr.N = rd, limit+1
		if _, err := buf.ReadFrom(lr); err != nil {
			return nil, err
		}
		s.alive.Store(true) // the peer is alive: no ping needed this interval
		b := buf.Bytes()
		if int64(len(b)) > limit {
			if _, err := io.Copy(io.Discard, rd); err != nil {
				return nil, errOversized // over the hard limit: the library closed with 1009
			}
			s.handle(b) // counts toward the rate limit, answers too-large
			continue
		}
		if typ != websocket.MessageText {
			s.sendError(protocol.CodeBadJSON, "send JSON in text frames")
			continue
		}
		if next := s.handle(b); next != nil {
			return next, nil
		}
	}
}

// writeLoop writes s's messages to c until the session fails, the
// connection breaks or ctx ends (then it closes c), or handover closes
// (then it leaves c to the session a resume took over). A message whose
// write failed is kept for the connection that resumes the session.
func (h *Hub) writeLoop(ctx context.Context, handover <-chan struct{}, c *websocket.Conn, s *session) {
	ping := time.NewTicker(h.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case b := <-s.out:
			s.took(b)
			// No context here either (see readLoop); the pinger or ctx.Done
			// closes a connection whose writes are stuck.
			if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
				s.carry = b
				c.CloseNow()
				return
			}
		case <-handover:
			return
		case <-ping.C:
			if s.alive.Swap(false) {
				continue // the peer spoke this interval: it is there
			}
			go func() { // Ping waits for the pong, which the read loop receives
				pctx, cancel := context.WithTimeout(ctx, h.opts.PingInterval)
				defer cancel()
				if err := c.Ping(pctx); err != nil && ctx.Err() == nil {
					h.log.Debug("peer stopped answering pings", "member", s.member.ID)
					c.CloseNow()
				}
			}()
		case <-s.failed:
			h.drainThenClose(ctx, c, s)
			return
		case <-ctx.Done():
			c.CloseNow()
			return
		}
	}
}

// drainThenClose sends what is queued (unless the session failed for being
// slow), the final error, and a close frame.
func (h *Hub) drainThenClose(ctx context.Context, c *websocket.Conn, s *session) {
	code := websocket.StatusPolicyViolation
	if s.reason.Code == protocol.CodeShuttingDown {
		code = websocket.StatusGoingAway
	}
	if s.reason.Code != protocol.CodeSlowConsumer {
	drain:
		for {
			select {
			case b := <-s.out:
				s.took(b)
				if write(ctx, c, b) != nil {
					c.CloseNow()
					return
				}
			default:
				break drain
			}
		}
	}
	_ = write(ctx, c, mustJSON(s.reason))
	c.Close(code, s.reason.Code)
}

func write(ctx context.Context, c *websocket.Conn, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, finalWriteTimeout)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, b)
}

// HostOf is the host name (no port) the client used to reach us.
func HostOf(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host
}
