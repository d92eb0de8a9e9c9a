package show

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"
)

// statusReplaced closes a screen connection whose key reconnected
// elsewhere; the page then starts over as a new screen.
const statusReplaced websocket.StatusCode = 4001

const writeTimeout = 10 * time.Second

// conn is one control WebSocket (a host page or a screen).
type conn struct {
	reg  *Registry
	ws   *websocket.Conn
	role Role
	sh   *show
	scr  *screen // screens only; guarded by sh.mu

	out    chan []byte   // bounded outbox
	dirty  chan struct{} // hosts: the screen list changed; screens: the assignment may have
	ctx    context.Context
	cancel context.CancelCauseFunc

	msgs, errs bucket // read-side rate limits (reader goroutine only)
}

func newConn(r *Registry, ws *websocket.Conn, role Role, sh *show) *conn {
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &conn{reg: r, ws: ws, role: role, sh: sh, out: make(chan []byte, r.o.Outbox), dirty: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, errs: newBucket(5, 10)}
	if role == RoleScreen {
		c.msgs = newBucket(10, 10) // levels: 10/s
	} else {
		c.msgs = newBucket(20, 40)
	}
	return c
}

// send queues b without blocking; a full outbox closes the connection
// (the page reconnects and gets the current state).
func (c *conn) send(b []byte) bool {
	select {
	case c.out <- b:
		return true
	default:
		c.close(errSlow)
		return false
	}
}

func (c *conn) markDirty() {
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// close ends the connection; the first cause wins. It never blocks.
func (c *conn) close(cause error) { c.cancel(cause) }

func (c *conn) sendErr(code, msg string) {
	if c.errs.allow(time.Now()) {
		c.send(mustJSON(map[string]string{"type": TypeError, "code": code, "message": msg}))
	}
}

// run serves the connection until it ends; attach has already queued
// the hello. It owns the reader, writer and pinger goroutines.
func (c *conn) run() {
	// Writes and pings use their own timeouts, not c.ctx: cancelling a
	// context during a write makes the library drop the connection without
	// a close frame, and pages need the close code (e.g. 4001).
	writerDone, pingerDone, readDone := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	go func() {
		defer close(pingerDone)
		c.pingLoop()
	}()
	go func() { readDone <- c.readLoop() }()

	readEnded := false
	select {
	case err := <-readDone:
		readEnded = true
		c.close(fmt.Errorf("read: %w", err))
	case <-c.ctx.Done():
	}
	<-writerDone // finishes the message it is writing, if any
	code, reason := closeStatus(context.Cause(c.ctx))
	if !readEnded {
		_ = c.ws.Close(code, reason) // unblocks the reader and a pending ping
		<-readDone
	}
	_ = c.ws.CloseNow()
	<-pingerDone
	c.reg.log.Debug("control connection ended", "show", c.sh.name, "role", c.role, "cause", context.Cause(c.ctx))
}

func closeStatus(cause error) (websocket.StatusCode, string) {
	switch {
	case errors.Is(cause, errClosed):
		return websocket.StatusGoingAway, errClosed.Error()
	case errors.Is(cause, errSlow):
		return websocket.StatusPolicyViolation, errSlow.Error()
	case errors.Is(cause, errReplaced):
		return statusReplaced, errReplaced.Error()
	}
	return websocket.StatusNormalClosure, ""
}

func (c *conn) readLoop() error {
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			c.sendErr(CodeBadMessage, "messages are JSON text frames")
			continue
		}
		if len(data) > MaxMessage {
			c.sendErr(CodeTooLarge, fmt.Sprintf("message is %d bytes, the limit is %d", len(data), MaxMessage))
			continue
		}
		now := time.Now()
		if !c.msgs.allow(now) {
			if c.role != RoleScreen { // screens' excess levels are dropped silently
				c.sendErr(CodeRateLimited, "too many messages; slow down")
			}
			continue
		}
		m, err := Decode(data, c.role)
		if err != nil {
			c.sendErr(CodeBadMessage, err.Error())
			continue
		}
		if m.Type == TypeLevel {
			c.sh.setLevel(c, *m.Value)
			continue
		}
		if _, err := c.sh.apply(m); err != nil {
			c.sendErr(CodeUnknown, err.Error())
		}
	}
}

func (c *conn) writeLoop() {
	var last time.Time
	var timer *time.Timer
	var due <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var b []byte
		// Queued messages first: a screen's hello precedes its assign.
		select {
		case <-c.ctx.Done():
			return
		case b = <-c.out:
		default:
			select {
			case <-c.ctx.Done():
				return
			case b = <-c.out:
			case <-c.dirty:
				if c.role == RoleScreen {
					b = c.sh.assignFor(c)
					break
				}
				if due != nil {
					continue // already scheduled
				}
				if wait := c.reg.o.HostInterval - time.Since(last); wait > 0 {
					timer = time.NewTimer(wait)
					due = timer.C
					continue
				}
				b, last = c.sh.hostsMsg(), time.Now()
			case <-due:
				due = nil
				b, last = c.sh.hostsMsg(), time.Now()
			}
		}
		if b == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err := c.ws.Write(ctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			c.close(fmt.Errorf("write: %w", err))
			return
		}
	}
}

func (c *conn) pingLoop() {
	t := time.NewTicker(c.reg.o.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(c.reg.o.PingInterval, writeTimeout))
		err := c.ws.Ping(ctx)
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		if err != nil {
			c.close(fmt.Errorf("ping: %w", err))
			return
		}
	}
}

// bucket is a token bucket rate limiter (not safe for concurrent use).
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(rate, burst float64) bucket { return bucket{rate: rate, burst: burst, tokens: burst} }

func (b *bucket) allow(now time.Time) bool {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func newKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
