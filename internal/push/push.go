// Package push restreams live streams to other servers, as nginx-rtmp's
// push does: each (stream, destination URL) has a Pusher goroutine that
// reads the stream through internal/tap (audio as AAC-LC) and publishes
// it to an rtmp:// or rtmps:// server (YouTube, Twitch, another Parley)
// with gortmplib's client, or to an srt:// listener (caller mode, the
// streamid from the URL's query) as MPEG-TS.
//
// A destination that refuses or drops is retried after a backoff that
// doubles from Config.MinBackoff to Config.MaxBackoff (±20 % jitter); a
// stream that is not live is waited for (polled every Config.Poll) and
// pushed again when it is. Each destination's Status says where it
// stands (waiting for the stream, connecting, live, backoff), the last
// error in words, since when, bytes sent and reconnects. Destination URLs
// carry secrets (stream keys, tokens, passwords): statuses and logs show
// them through internal/redact only.
package push

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/backoff"
	"github.com/parley/parley/internal/redact"
	"github.com/parley/parley/internal/tap"
)

// State is where a destination stands.
type State string

const (
	// Waiting: the stream is not live; the push starts when it is.
	Waiting State = "waiting"
	// Connecting: dialing the destination and starting the publish.
	Connecting State = "connecting"
	// Live: the stream flows to the destination.
	Live State = "live"
	// Backoff: the last attempt failed (Status.Error says why); the next
	// one comes after a wait.
	Backoff State = "backoff"
)

// States lists every state (for metrics).
var States = []State{Waiting, Connecting, Live, Backoff}

// Status is one destination's state.
type Status struct {
	ID     string `json:"id"`
	Stream string `json:"stream"`
	// URL is the destination with its secrets masked.
	URL string `json:"url"`
	// Origin is "config" (the configuration file; not removable through
	// the API) or "api".
	Origin string `json:"origin"`
	State  State  `json:"state"`
	// Since is when State last changed.
	Since time.Time `json:"since"`
	// Error is the last failure in words ("connection refused",
	// "refused by the destination: …"); it stays through the backoff and
	// is cleared when the push goes live.
	Error string `json:"error,omitempty"`
	// Tracks describes what is pushed, e.g. "H264, AAC".
	Tracks string `json:"tracks,omitempty"`
	// BytesSent counts bytes written to the destination, over all
	// connections.
	BytesSent uint64 `json:"bytes_sent"`
	// Reconnects counts connections after the first.
	Reconnects uint64 `json:"reconnects"`
}

// Reader is a stream's media as access units (internal/tap's Reader).
type Reader interface {
	Tracks() []tap.Track
	Read(ctx context.Context) (tap.Frame, error)
	Close()
}

// Config configures a Manager.
type Config struct {
	// Open reads a stream (tap.Hub.Open with AAC audio); it returns
	// tap.ErrNotLive while the stream has no publisher. Required.
	Open func(ctx context.Context, stream string) (Reader, error)
	// MinBackoff and MaxBackoff bound the wait after a failure; 0 means
	// 1 s and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Poll is how often a stream that is not live is looked for; 0 means 1 s.
	Poll time.Duration
	// Timeout bounds connecting and publishing, and each write; 0 means 10 s.
	Timeout time.Duration
	// RootCAs checks rtmps:// destinations' certificates; nil means the
	// system's roots.
	RootCAs *x509.CertPool
	// MaxPerStream and MaxTotal bound the destinations; 0 means 8 and 64.
	MaxPerStream, MaxTotal int
	// OnStatus, when set, is told every status change (tests wait on it).
	OnStatus func(Status)
	Logger   *slog.Logger
}

// Errors of Add and Remove.
var (
	ErrExists     = errors.New("the stream already pushes to this url")
	ErrFull       = errors.New("too many push destinations")
	ErrNotFound   = errors.New("no such push destination")
	ErrFromConfig = errors.New("this push is not the API's (it is in the configuration file); remove it there")
)

// Manager runs the pushes.
type Manager struct {
	cfg Config
	log *slog.Logger

	bytes, reconnects atomic.Uint64 // over every destination, removed ones too

	mu     sync.Mutex
	pushes map[string]*pusher // by stream + "/" + id
	closed bool
	wg     sync.WaitGroup
}

// pusher is one destination and its goroutine.
type pusher struct {
	m      *Manager
	stream string
	raw    string
	st     Status // guarded by m.mu
	bytes  atomic.Uint64
	cancel context.CancelFunc
	done   chan struct{}
}

// New makes a Manager; destinations are added with Add.
func New(cfg Config) *Manager {
	cfg.MinBackoff = cmp.Or(max(cfg.MinBackoff, 0), time.Second)
	cfg.MaxBackoff = max(cmp.Or(cfg.MaxBackoff, 30*time.Second), cfg.MinBackoff)
	cfg.Poll = cmp.Or(max(cfg.Poll, 0), time.Second)
	cfg.Timeout = cmp.Or(max(cfg.Timeout, 0), 10*time.Second)
	cfg.MaxPerStream = cmp.Or(max(cfg.MaxPerStream, 0), 8)
	cfg.MaxTotal = cmp.Or(max(cfg.MaxTotal, 0), 64)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log.With("component", "push"), pushes: map[string]*pusher{}}
}

// ID is a destination's id: stable for a URL, so the configuration's
// pushes keep theirs across restarts, and telling nothing of the URL.
func ID(raw string) string {
	h := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(h[:6])
}

// Add starts pushing stream to the destination raw (checked with Check).
func (m *Manager) Add(stream, raw, origin string) (Status, error) {
	if err := Check(raw); err != nil {
		return Status{}, err
	}
	id := ID(raw)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Status{}, errors.New("push: closed")
	}
	if _, ok := m.pushes[stream+"/"+id]; ok {
		return Status{}, ErrExists
	}
	n := 0
	for _, p := range m.pushes {
		if p.stream == stream {
			n++
		}
	}
	if n >= m.cfg.MaxPerStream {
		return Status{}, fmt.Errorf("%w: stream %s has %d (the most per stream)", ErrFull, stream, n)
	}
	if len(m.pushes) >= m.cfg.MaxTotal {
		return Status{}, fmt.Errorf("%w: the server has %d (the most in all)", ErrFull, len(m.pushes))
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pusher{m: m, stream: stream, raw: raw, cancel: cancel, done: make(chan struct{}),
		st: Status{ID: id, Stream: stream, URL: redact.URL(raw, true), Origin: origin, State: Waiting, Since: time.Now()}}
	m.pushes[stream+"/"+id] = p
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(p.done)
		p.run(ctx)
	}()
	m.log.Info("push added", "stream", stream, "id", id, "url", p.st.URL, "origin", origin)
	return p.statusLocked(), nil
}

// Remove stops a destination and waits for its goroutine; with origin
// set, only one added with that origin (ErrFromConfig for another).
func (m *Manager) Remove(stream, id, origin string) error {
	m.mu.Lock()
	p, ok := m.pushes[stream+"/"+id]
	switch {
	case !ok:
		m.mu.Unlock()
		return ErrNotFound
	case origin != "" && p.st.Origin != origin:
		m.mu.Unlock()
		return ErrFromConfig
	}
	delete(m.pushes, stream+"/"+id)
	m.mu.Unlock()
	p.cancel()
	<-p.done
	m.log.Info("push removed", "stream", stream, "id", id)
	return nil
}

// List is one stream's destinations; All (stream "") every one, by
// stream and id.
func (m *Manager) List(stream string) []Status {
	m.mu.Lock()
	var out []Status
	for _, p := range m.pushes {
		if stream == "" || p.stream == stream {
			out = append(out, p.statusLocked())
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Stream != out[j].Stream {
			return out[i].Stream < out[j].Stream
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// All is every destination with its status (for the status page).
func (m *Manager) All() []Status { return m.List("") }

// URLs is the raw URLs of the destinations of an origin, by stream (what
// the API's additions are saved as).
func (m *Manager) URLs(origin string) map[string][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]string{}
	for _, p := range m.pushes {
		if p.st.Origin == origin {
			out[p.stream] = append(out[p.stream], p.raw)
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

// Count is the number of destinations in each state.
func (m *Manager) Count() map[State]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := map[State]int{}
	for _, p := range m.pushes {
		c[p.st.State]++
	}
	return c
}

// Stats are totals over every destination, removed ones included.
type Stats struct {
	BytesSent, Reconnects uint64
}

// Stats reports the totals.
func (m *Manager) Stats() Stats {
	return Stats{BytesSent: m.bytes.Load(), Reconnects: m.reconnects.Load()}
}

// Close stops every push and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	for _, p := range m.pushes {
		p.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (p *pusher) statusLocked() Status {
	st := p.st
	st.BytesSent = p.bytes.Load()
	return st
}

// set records a status change.
func (p *pusher) set(f func(st *Status)) {
	p.m.mu.Lock()
	old := p.st.State
	f(&p.st)
	if p.st.State != old {
		p.st.Since = time.Now()
	}
	st := p.statusLocked()
	p.m.mu.Unlock()
	if p.m.cfg.OnStatus != nil {
		p.m.cfg.OnStatus(st)
	}
}

// sent counts bytes written to the destination.
func (p *pusher) sent(n int) {
	p.bytes.Add(uint64(n))
	p.m.bytes.Add(uint64(n))
}

// errEnded is the stream's publisher going: not the destination's fault.
var errEnded = errors.New("the stream ended")

// run is a destination's life: wait for the stream, connect, push; after
// a failure wait out the backoff and try again.
func (p *pusher) run(ctx context.Context) {
	cfg := p.m.cfg
	bo := &backoff.Backoff{Min: cfg.MinBackoff, Max: cfg.MaxBackoff}
	log := p.m.log.With("stream", p.stream, "id", ID(p.raw), "url", redact.URL(p.raw, true))
	attempts := 0
	for ctx.Err() == nil {
		r, err := cfg.Open(ctx, p.stream)
		if errors.Is(err, tap.ErrNotLive) {
			p.set(func(st *Status) { st.State, st.Tracks = Waiting, "" })
			if !backoff.Sleep(ctx, cfg.Poll) {
				return
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// The stream is live but cannot be read (no keyframe, …):
			// not the destination's fault, but not worth hammering either.
			p.fail(ctx, log, streamError{err}, bo)
			continue
		}
		if attempts > 0 {
			p.m.reconnects.Add(1)
			p.set(func(st *Status) { st.Reconnects++ })
		}
		attempts++
		p.set(func(st *Status) { st.State = Connecting })
		wasLive, err := p.push(ctx, r, log)
		r.Close()
		if ctx.Err() != nil {
			return
		}
		if wasLive {
			bo.Reset()
		}
		if errors.Is(err, errEnded) {
			log.Info("push paused: the stream ended")
			p.set(func(st *Status) { st.State, st.Tracks = Waiting, "" })
			continue
		}
		p.fail(ctx, log, err, bo)
	}
}

// fail records a failure and waits out the backoff.
func (p *pusher) fail(ctx context.Context, log *slog.Logger, err error, bo *backoff.Backoff) {
	reason := Reason(err, p.raw)
	wait := bo.Next()
	log.Warn("push failed", "err", redact.Text(err.Error(), p.raw), "retry_in", wait)
	p.set(func(st *Status) { st.State, st.Error, st.Tracks = Backoff, reason, "" })
	backoff.Sleep(ctx, wait)
}

// push runs one connection: connects, then copies frames until the
// stream ends, the destination fails or ctx ends. wasLive tells whether
// the publish started.
func (p *pusher) push(ctx context.Context, r Reader, log *slog.Logger) (wasLive bool, err error) {
	u, err := parse(p.raw)
	if err != nil {
		return false, err
	}
	// The destination going (its watcher sees the connection end) cancels ctx.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var s session
	if u.Scheme == "srt" {
		s, err = dialSRT(ctx, cancel, p, u, r)
	} else {
		s, err = dialRTMP(ctx, cancel, p, u, r)
	}
	if err != nil {
		return false, err
	}
	defer s.close()
	p.set(func(st *Status) { st.State, st.Error, st.Tracks = Live, "", s.describe() })
	log.Info("pushing", "tracks", s.describe())
	err = s.run(ctx, r)
	if errors.Is(err, io.EOF) {
		return true, errEnded
	}
	if e := s.err(); e != nil {
		return true, e
	}
	return true, err
}

// session is one connection to a destination.
type session interface {
	// run sends the reader's frames until it ends (io.EOF), ctx ends or
	// sending fails.
	run(ctx context.Context, r Reader) error
	// describe names the tracks sent ("H264, AAC").
	describe() string
	// err says how the destination went, nil while it is there.
	err() error
	// close ends the connection and waits for its watcher.
	close()
}

// watcher reads and drops what a destination sends; when the connection
// ends it records why and calls gone. Closing the connection ends its
// goroutine; done is closed then.
type watcher struct {
	done chan struct{}
	rerr error // set before done is closed
}

func watch(c io.Reader, gone func()) *watcher {
	w := &watcher{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				w.rerr = fmt.Errorf("the destination closed the connection: %w", err)
				gone()
				return
			}
		}
	}()
	return w
}

// err is how the destination went, nil while it is there.
func (w *watcher) err() error {
	select {
	case <-w.done:
		return w.rerr
	default:
		return nil
	}
}

// countConn counts the bytes written to a destination, and bounds each
// write by the timeout.
type countConn struct {
	net.Conn
	p       *pusher
	timeout time.Duration
}

func (c *countConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.Conn.Write(b)
	c.p.sent(n)
	return n, err
}
