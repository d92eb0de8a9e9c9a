// Package httpconn serves the keep-alive HTTP/1.1 connections of one hot
// path (LL-HLS: each player asks ten times a second) with less work per
// request than net/http: the connection is taken over (hijacked) at its
// first request for the path, and from then on each request head is read
// from one buffer and each answer goes out in one writev, with no
// background read and no per-request deadline changes. Anything the loop
// does not take plainly — another path, a body, an upgrade, a head it
// would have to think about — goes back to net/http with the bytes read so
// far, through Listener, and net/http serves the connection from there on.
package httpconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/httperr"
)

// Config sets a Loop's limits; zero values take the defaults.
type Config struct {
	// Handler answers the requests the loop takes.
	Handler http.Handler
	// Takes reports whether the loop answers a request for this path
	// (the request-target's path, as sent); others go back to net/http.
	Takes func(path string) bool
	// MaxHead bounds a request's line and headers (default 8 KiB; larger
	// heads get 431 and the connection is closed).
	MaxHead int
	// Idle bounds the wait for the next request (default 120 s).
	Idle time.Duration
	// HeadTimeout bounds reading a head once its first bytes came and the
	// rest did not come with them (default 10 s).
	HeadTimeout time.Duration
	// WriteTimeout bounds writing one answer (default 30 s).
	WriteTimeout time.Duration
}

// Loop owns the connections it took over; Close ends them.
type Loop struct {
	cfg  Config
	back *Listener
	ctx  context.Context // requests' context: ends with Close
	stop context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{}

	served, handed atomic.Int64
	date           dateCache
}

// New makes a loop that hands connections back to net/http through back.
func New(cfg Config, back *Listener) *Loop {
	if cfg.MaxHead <= 0 {
		cfg.MaxHead = 8 << 10
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 120 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.HeadTimeout <= 0 {
		cfg.HeadTimeout = 10 * time.Second
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Loop{cfg: cfg, back: back, ctx: ctx, stop: stop, conns: map[net.Conn]struct{}{}}
}

// Stats are the requests the loop answered and the connections it handed
// back to net/http.
func (l *Loop) Stats() (served, handedBack int64) { return l.served.Load(), l.handed.Load() }

// Close ends every connection the loop holds and the requests in them.
func (l *Loop) Close() {
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

// Eligible reports whether net/http's request r, on a plain (not TLS)
// HTTP/1.1 connection, may be served by Take: a GET or HEAD without a
// body, upgrade or Expect. (TLS connections stay with net/http, which
// knows their state.)
func Eligible(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor == 1 && r.TLS == nil && !r.Close &&
		(r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		r.ContentLength <= 0 && len(r.TransferEncoding) == 0 &&
		r.Header.Get("Upgrade") == "" && r.Header.Get("Expect") == ""
}

// Take answers r (Eligible) and then serves the rest of its connection:
// it returns when the connection ends or goes back to net/http. false:
// the connection could not be taken, and r is not answered.
func (l *Loop) Take(w http.ResponseWriter, r *http.Request) bool {
	if l.ctx.Err() != nil {
		return false
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	// Bytes net/http read past r (a pipelined request) come first.
	pending, _ := brw.Reader.Peek(brw.Reader.Buffered())
	c := &session{l: l, conn: conn, remote: r.RemoteAddr}
	c.br = bufio.NewReaderSize(&prefixConn{Conn: conn, pre: bytes.Clone(pending)}, l.cfg.MaxHead)
	c.w.conn, c.w.date = conn, &l.date
	if !l.add(conn) {
		_ = conn.Close()
		return true
	}
	defer l.remove(conn)
	defer func() {
		if p := recover(); p != nil { // net/http logs it, but leaves a hijacked connection open
			_ = conn.Close()
			panic(p)
		}
	}()
	r = r.WithContext(l.ctx)
	if !c.answer(r) {
		_ = conn.Close()
		return true
	}
	c.serve()
	return true
}

func (l *Loop) add(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Loop) remove(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// session is one taken connection.
type session struct {
	l      *Loop
	conn   net.Conn
	br     *bufio.Reader
	remote string
	w      writer

	readBy, writeBy time.Time // deadlines set on conn
}

// deadlinesSlack: deadlines are moved when less than their length minus
// this is left, so a busy connection sets them about once a second.
const deadlinesSlack = time.Second

func (c *session) serve() {
	for {
		now := time.Now()
		if c.readBy.Sub(now) < c.l.cfg.Idle-deadlinesSlack {
			c.readBy = now.Add(c.l.cfg.Idle)
			if c.conn.SetReadDeadline(c.readBy) != nil {
				_ = c.conn.Close()
				return
			}
		}
		head, err := readHead(c.br, func() error {
			c.readBy = time.Now().Add(c.l.cfg.HeadTimeout) // moved back to Idle at the next request
			return c.conn.SetReadDeadline(c.readBy)
		})
		switch {
		case errors.Is(err, errHeadTooLarge):
			c.refuse(http.StatusRequestHeaderFieldsTooLarge)
			return
		case err != nil: // gone, idle too long, or closed by Close
			_ = c.conn.Close()
			return
		}
		req, ok := parseHead(head)
		if !ok || !c.l.cfg.Takes(string(req.path)) {
			c.handBack()
			return
		}
		_, _ = c.br.Discard(len(head))
		r, err := req.request(c.l.ctx, c.remote)
		if err != nil {
			c.refuse(http.StatusBadRequest)
			return
		}
		if !c.answer(r) || req.close {
			_ = c.conn.Close()
			return
		}
	}
}

// answer runs the handler for r and sends its answer; false: the
// connection cannot carry another request.
func (c *session) answer(r *http.Request) bool {
	now := time.Now()
	if c.writeBy.Sub(now) < c.l.cfg.WriteTimeout-deadlinesSlack {
		c.writeBy = now.Add(c.l.cfg.WriteTimeout)
		if c.conn.SetWriteDeadline(c.writeBy) != nil {
			return false
		}
	}
	c.w.reset(r.Method == http.MethodHead)
	c.l.cfg.Handler.ServeHTTP(&c.w, r)
	c.l.served.Add(1)
	return c.w.finish() && !strings.EqualFold(c.w.h.Get("Connection"), "close")
}

// refuse answers a head the loop will not read with status (a JSON error, as every endpoint answers) and closes.
func (c *session) refuse(status int) {
	c.w.reset(false)
	c.w.Header().Set("Connection", "close")
	code := "bad_request"
	if status == http.StatusRequestHeaderFieldsTooLarge {
		code = "headers_too_large"
	}
	httperr.Write(&c.w, status, code, http.StatusText(status))
	c.w.finish()
	closeGently(c.conn)
}

// closeGently closes after the peer has had a moment to read the answer:
// closing with unread bytes from it would reset the connection, and the
// reset can overtake the answer (net/http does the same).
func closeGently(c net.Conn) {
	if tc, ok := c.(interface{ CloseWrite() error }); ok && tc.CloseWrite() == nil {
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.CopyN(io.Discard, c, 256<<10)
	}
	_ = c.Close()
}

// handBack gives the connection, with what was read of it, to net/http.
func (c *session) handBack() {
	pending, _ := c.br.Peek(c.br.Buffered())
	_ = c.conn.SetDeadline(time.Time{})
	c.l.remove(c.conn)
	c.l.handed.Add(1)
	if !c.l.back.give(&prefixConn{Conn: c.conn, pre: bytes.Clone(pending)}) {
		_ = c.conn.Close()
	}
}

// errHeadTooLarge: no end of the head within MaxHead bytes.
var errHeadTooLarge = errors.New("request head too large")

// readHead returns the next request's head (line and headers, through the
// empty line) without consuming it. partial is called once if the head
// did not come whole with its first bytes.
func readHead(br *bufio.Reader, partial func() error) ([]byte, error) {
	for first := true; ; {
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b, crlfcrlf); i >= 0 {
			return b[:i+4], nil
		}
		if i := bytes.Index(b, lflf); i >= 0 { // bare LFs: net/http's to judge
			return b[:i+2], nil
		}
		if len(b) >= br.Size() {
			return nil, errHeadTooLarge
		}
		if len(b) > 0 && first {
			first = false
			if err := partial(); err != nil {
				return nil, err
			}
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return nil, err
		}
	}
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
)

// head is a request head the loop takes: its fields point into the
// reader's buffer until request copies them.
type head struct {
	method, target, path []byte
	host                 []byte
	fields               [][2][]byte // other header fields, name and value
	close                bool        // Connection: close
}

// parseHead reads a request head that the loop can answer as is: an
// HTTP/1.1 GET or HEAD with CRLF lines, tokens for names, no body,
// upgrade, Expect or folded lines. false: anything else (net/http reads
// it, and answers the malformed ones).
func parseHead(b []byte) (h head, ok bool) {
	line, rest, ok := bytes.Cut(b, crlf)
	if !ok {
		return h, false
	}
	m, line, ok := bytes.Cut(line, sp)
	if !ok {
		return h, false
	}
	target, proto, ok := bytes.Cut(line, sp)
	if !ok || string(proto) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return h, false
	}
	if string(m) != http.MethodGet && string(m) != http.MethodHead {
		return h, false
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return h, false
		}
	}
	h.method, h.target = m, target
	h.path, _, _ = bytes.Cut(target, []byte("?"))
	for len(rest) > 0 {
		line, rest, ok = bytes.Cut(rest, crlf)
		if !ok {
			return h, false
		}
		if len(line) == 0 {
			return h, len(rest) == 0 && h.host != nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || !isToken(name) {
			return h, false
		}
		value = bytes.Trim(value, " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return h, false
			}
		}
		switch {
		case asciiEqualFold(name, "Host"):
			if h.host != nil {
				return h, false
			}
			h.host = value
		case asciiEqualFold(name, "Connection"):
			switch {
			case asciiEqualFold(value, "close"):
				h.close = true
			case asciiEqualFold(value, "keep-alive"):
			default:
				return h, false
			}
		case asciiEqualFold(name, "Content-Length"):
			if string(value) != "0" {
				return h, false
			}
		case asciiEqualFold(name, "Transfer-Encoding"), asciiEqualFold(name, "Upgrade"), asciiEqualFold(name, "Expect"):
			return h, false
		default:
			h.fields = append(h.fields, [2][]byte{name, value})
		}
	}
	return h, false
}

var (
	crlf = []byte("\r\n")
	sp   = []byte(" ")
)

// request builds the net/http request the handler gets.
func (h *head) request(ctx context.Context, remote string) (*http.Request, error) {
	target := string(h.target)
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, err
	}
	hdr := make(http.Header, len(h.fields))
	for _, f := range h.fields {
		k := http.CanonicalHeaderKey(string(f[0]))
		hdr[k] = append(hdr[k], string(f[1]))
	}
	r := &http.Request{
		Method: string(h.method), URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hdr, Body: http.NoBody, Host: string(h.host), RemoteAddr: remote, RequestURI: target,
		Close: h.close,
	}
	return r.WithContext(ctx), nil
}

// isToken: RFC 9110 field-name characters.
func isToken(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0) {
			return false
		}
	}
	return true
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if d >= 'A' && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// prefixConn reads pre before the connection.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// writer is the loop's ResponseWriter: the status line and headers go out
// with the body's first write, in one writev, when the handler set a
// Content-Length; otherwise the body is kept and sent with its length
// when the handler returns.
type writer struct {
	conn   net.Conn
	date   *dateCache
	h      http.Header
	status int
	isHead bool
	sent   bool // status line and headers written
	length int  // Content-Length, or -1
	n      int  // body bytes taken
	body   []byte
	head   []byte
	vec    [2][]byte
	failed bool
}

func (w *writer) reset(isHead bool) {
	if w.h == nil {
		w.h = make(http.Header, 8)
	}
	clear(w.h)
	w.status, w.isHead, w.sent, w.length, w.n, w.failed = 0, isHead, false, -1, 0, false
	w.body = w.body[:0]
}

func (w *writer) Header() http.Header { return w.h }

func (w *writer) WriteHeader(status int) {
	if w.status != 0 || status < 200 || status > 999 {
		return // informational answers are not sent; a second status is ignored
	}
	w.status = status
	if v := w.h["Content-Length"]; len(v) == 1 {
		if n, err := strconv.Atoi(v[0]); err == nil && n >= 0 {
			w.length = n
		}
	}
	if !bodyAllowed(status) {
		w.length = 0
	}
}

func (w *writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return 0, errWrite
	}
	if w.isHead || !bodyAllowed(w.status) {
		return len(p), nil
	}
	if w.length >= 0 && w.n+len(p) > w.length {
		w.failed = true
		return 0, http.ErrContentLength
	}
	w.n += len(p)
	switch {
	case w.length < 0:
		w.body = append(w.body, p...)
		return len(p), nil
	case w.sent:
		if _, err := w.conn.Write(p); err != nil {
			w.failed = true
			return 0, err
		}
		return len(p), nil
	}
	w.sent = true
	w.vec[0], w.vec[1] = w.encodeHead(), p
	bufs := net.Buffers(w.vec[:])
	if _, err := bufs.WriteTo(w.conn); err != nil {
		w.failed = true
		return 0, err
	}
	return len(p), nil
}

var errWrite = errors.New("httpconn: the answer could not be written")

// finish sends what is left of the answer; false: the connection cannot
// go on (a write failed, or fewer body bytes than the Content-Length).
func (w *writer) finish() bool {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return false
	}
	if !w.sent {
		if w.length < 0 && !w.isHead { // a HEAD's unknown length stays unsaid
			w.length, w.n = len(w.body), len(w.body)
		}
		w.sent = true
		w.vec[0], w.vec[1] = w.encodeHead(), w.body
		if w.isHead || !bodyAllowed(w.status) {
			w.vec[1] = nil
		}
		bufs := net.Buffers(w.vec[:])
		if _, err := bufs.WriteTo(w.conn); err != nil {
			return false
		}
	}
	return w.isHead || !bodyAllowed(w.status) || w.length < 0 || w.n == w.length
}

// encodeHead writes the status line and headers into w.head.
func (w *writer) encodeHead() []byte {
	b := append(w.head[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(w.status)...)
	b = append(b, "\r\nDate: "...)
	b = append(b, w.date.text()...)
	b = append(b, crlf...)
	for k, vs := range w.h {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, crlf...)
		}
	}
	if w.length >= 0 && bodyAllowed(w.status) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(w.length), 10)
		b = append(b, crlf...)
	}
	b = append(b, crlf...)
	w.head = b
	return b
}

// bodyAllowed: 204 and 304 answers have no body (RFC 9110 §6.4.1).
func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// dateCache holds the Date header's value, made once a second (one per
// Loop, shared by its connections).
type dateCache struct{ p atomic.Pointer[dateValue] }

type dateValue struct {
	unix int64
	text string
}

func (dc *dateCache) text() string {
	now := time.Now()
	if d := dc.p.Load(); d != nil && d.unix == now.Unix() {
		return d.text
	}
	d := &dateValue{unix: now.Unix(), text: now.UTC().Format(http.TimeFormat)}
	dc.p.Store(d)
	return d.text
}

// Listener is net/http's listener with a way back in for connections a
// Loop hands back: they come out of Accept as if new, with the bytes the
// loop read still to be read.
type Listener struct {
	net.Listener
	back   chan net.Conn
	accept chan acceptResult
	done   chan struct{}
	once   sync.Once
}

type acceptResult struct {
	c   net.Conn
	err error
}

// NewListener wraps ln. Its accept loop ends when ln fails or Close.
func NewListener(ln net.Listener) *Listener {
	l := &Listener{Listener: ln, back: make(chan net.Conn), accept: make(chan acceptResult), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			// Out of file descriptors and the like: net/http logs it
			// and asks again; this loop waits as net/http does.
			wait = min(max(2*wait, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(wait):
			case <-l.done:
				return
			}
		} else {
			wait = 0
		}
		select {
		case l.accept <- acceptResult{c, err}:
		case <-l.done:
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Accept returns the next new or handed-back connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.back:
		return c, nil
	case a := <-l.accept:
		return a.c, a.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// give hands c to Accept; false when the listener is closed.
func (l *Listener) give(c net.Conn) bool {
	select {
	case l.back <- c:
		return true
	case <-l.done:
		return false
	}
}

// Close closes the listener; connections handed back later are closed.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}
