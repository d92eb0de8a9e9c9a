// Package client is Parley's Go SDK: it dials a Parley server over
// WebSocket or the HTTP long-poll transport, joins a room, relays signals,
// and builds pion PeerConnections from the ICE servers the server hands
// out. Parley's tests, its load tool and native programs use it.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/parley/parley/pkg/protocol"
)

// Transport names.
const (
	WebSocket = "ws"
	HTTP      = "http"
)

// Options tune Dial. The zero value dials WebSocket.
type Options struct {
	Transport  string       // WebSocket (default) or HTTP
	HTTPClient *http.Client // for both transports (e.g. a dialer with its own source address); default http.DefaultClient
	Buffer     int          // events buffered for the reader (default 1024)
}

// Client is one signaling session.
type Client struct {
	t      transport
	events chan protocol.Message
	done   chan struct{}
	err    error // why the session ended; set before done closes

	mu      sync.Mutex
	waiter  chan protocol.Message // the pending Join's answer
	id      string
	resume  string // the latest resume token
	closing bool
}

// transport moves raw messages; recv blocks until messages arrive.
type transport interface {
	send(ctx context.Context, b []byte) error
	recv(ctx context.Context) ([][]byte, error)
	close() error
}

// Dial opens a session with the server at baseURL ("http://host:port").
func Dial(ctx context.Context, baseURL string, o *Options) (*Client, error) {
	return dial(ctx, baseURL, o, nil)
}

// DialAny dials the first of urls that answers, trying them in order,
// and returns the session and the URL it reached. A member whose node of
// a cluster is gone uses it with the nodes its joined listed
// (protocol.Joined.Nodes, least loaded first), a member of a drained
// node with server-shutdown's URL first; either way it joins afresh.
func DialAny(ctx context.Context, urls []string, o *Options) (*Client, string, error) {
	var errs []error
	for _, u := range urls {
		c, err := Dial(ctx, u, o)
		if err == nil {
			return c, u, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, "", errors.New("client: no server to dial")
	}
	return nil, "", errors.Join(errs...)
}

// dial opens a session; over HTTP, open (when not nil) is the body of the
// request that opens it.
func dial(ctx context.Context, baseURL string, o *Options, open []byte) (*Client, error) {
	var opt Options
	if o != nil {
		opt = *o
	}
	if opt.Buffer <= 0 {
		opt.Buffer = 1024
	}
	baseURL = strings.TrimRight(baseURL, "/")
	var t transport
	var err error
	switch opt.Transport {
	case "", WebSocket:
		t, err = dialWS(ctx, baseURL, opt.HTTPClient)
	case HTTP:
		t, err = dialHTTP(ctx, baseURL, opt.HTTPClient, open)
	default:
		return nil, fmt.Errorf("client: unknown transport %q", opt.Transport)
	}
	if err != nil {
		return nil, err
	}
	return start(t, opt), nil
}

func start(t transport, opt Options) *Client {
	c := &Client{t: t, events: make(chan protocol.Message, opt.Buffer), done: make(chan struct{})}
	go c.read()
	return c
}

// Resume opens a new session that takes over the member whose connection
// dropped, presenting its resume token (ResumeToken of the old Client,
// read after the drop too). The new Client is that member, in its room:
// same ID, and its Events start with what was queued for it while it was
// away; the other members saw no leave. A refused resume (the token is
// unknown, used or the member's grace ran out) is a *JoinError with Code
// protocol.CodeResumeFailed: Dial and Join afresh.
func Resume(ctx context.Context, baseURL, token string, o *Options) (*Client, *protocol.Message, error) {
	msg, err := json.Marshal(protocol.Message{Type: protocol.TypeResume, Resume: token})
	if err != nil {
		return nil, nil, fmt.Errorf("resume: %w", err)
	}
	var open []byte
	if o != nil && o.Transport == HTTP { // the resume opens the HTTP session
		open, msg = msg, nil
	}
	c, err := dial(ctx, baseURL, o, open)
	if err != nil {
		return nil, nil, err
	}
	m, err := c.await(ctx, msg)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, m, nil
}

// read owns the receive side until the transport ends.
func (c *Client) read() {
	defer close(c.events)
	defer close(c.done)
	ctx := context.Background()
	for {
		batch, err := c.t.recv(ctx)
		if err != nil {
			c.err = err
			return
		}
		for _, b := range batch {
			var m protocol.Message
			if err := json.Unmarshal(b, &m); err != nil {
				continue
			}
			c.dispatch(m)
		}
	}
}

func (c *Client) dispatch(m protocol.Message) {
	c.mu.Lock()
	w := c.waiter
	answers := m.Type == protocol.TypeJoined || m.Type == protocol.TypeResumed || m.Type == protocol.TypeFull || m.Type == protocol.TypeError
	if w != nil && answers {
		c.waiter = nil
		if m.Type == protocol.TypeJoined || m.Type == protocol.TypeResumed {
			c.id, c.resume = m.ID, m.Resume
		}
	}
	c.mu.Unlock()
	if w != nil && answers {
		w <- m
		return
	}
	c.events <- m
}

// Events delivers everything the server sends that is not the answer to
// Join: peer-joined, peer-left, signal, error, pong. It is closed when the
// session ends (see Err).
func (c *Client) Events() <-chan protocol.Message { return c.events }

// Done is closed when the session has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the session ended, once Done is closed.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// ID is this member's ID once joined.
func (c *Client) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// ResumeToken is the token that resumes this member on a new connection
// should this one drop (see Resume); "" before joining or when the server
// does not keep members for resuming.
func (c *Client) ResumeToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resume
}

// JoinError is returned by Join when the server refused.
type JoinError struct {
	Full    bool   // the room was at capacity
	Code    string // the error code otherwise
	Message string
}

func (e *JoinError) Error() string {
	if e.Full {
		return "room is full"
	}
	return "join refused: " + e.Code + ": " + e.Message
}

// ErrClosed is returned for operations on an ended session.
var ErrClosed = errors.New("client: session closed")

// Join enters room under name (token may be empty) and waits for the
// answer. Refusals come back as *JoinError.
func (c *Client) Join(ctx context.Context, room, name, token string) (*protocol.Message, error) {
	return c.JoinMode(ctx, room, name, token, "")
}

// JoinMode is Join asking for a room mode ("p2p" or "sfu") should the
// join create the room.
func (c *Client) JoinMode(ctx context.Context, room, name, token, mode string) (*protocol.Message, error) {
	b, err := json.Marshal(protocol.Message{Type: protocol.TypeJoin, Room: room, Name: name, Token: token, Mode: mode})
	if err != nil {
		return nil, fmt.Errorf("encode join: %w", err)
	}
	return c.await(ctx, b)
}

// await sends msg (if any) and waits for the answer: joined or resumed,
// else a *JoinError.
func (c *Client) await(ctx context.Context, msg []byte) (*protocol.Message, error) {
	w := make(chan protocol.Message, 1)
	c.mu.Lock()
	c.waiter = w
	c.mu.Unlock()
	if msg != nil {
		if err := c.SendRaw(ctx, msg); err != nil {
			return nil, err
		}
	}
	select {
	case m := <-w:
		switch m.Type {
		case protocol.TypeJoined, protocol.TypeResumed:
			return &m, nil
		case protocol.TypeFull:
			return nil, &JoinError{Full: true}
		default:
			return nil, &JoinError{Code: m.Code, Message: m.Message}
		}
	case <-c.done:
		return nil, fmt.Errorf("join: %w (%v)", ErrClosed, c.err)
	case <-ctx.Done():
		c.mu.Lock()
		c.waiter = nil
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// Signal relays data (marshalled to JSON) to member to.
func (c *Client) Signal(ctx context.Context, to string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("signal: encode data: %w", err)
	}
	return c.Send(ctx, protocol.Message{Type: protocol.TypeSignal, To: to, Data: raw})
}

// Leave leaves the room; the server answers with a "left" event.
func (c *Client) Leave(ctx context.Context) error {
	return c.Send(ctx, protocol.Message{Type: protocol.TypeLeave})
}

// Send sends any message.
func (c *Client) Send(ctx context.Context, m protocol.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Type, err)
	}
	return c.SendRaw(ctx, b)
}

// SendRaw sends bytes as one message, unchecked (tests use it for bad input).
func (c *Client) SendRaw(ctx context.Context, b []byte) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	if err := c.t.send(ctx, b); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// Close ends the session (leaving the room) and waits for the reader.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closing = true
	c.mu.Unlock()
	err := c.t.close()
	go func() { // unblock the reader if nobody drains events
		for range c.events {
		}
	}()
	<-c.done
	return err
}
