// Package hls serves every live stream as Low-Latency HLS (fMP4, ~200 ms
// parts, blocking playlist reload, preload hints) with gohlslib's muxer.
//
// A Manager holds one muxer per stream. The muxer of a stream starts with
// the stream's first HLS request (or at once for streams kept always on),
// reads the stream's frames through an internal/tap reader, and stops
// when no HLS request came for Config.Idle or the stream's publisher
// leaves; a stream published again gets a fresh muxer (its file names
// carry a new prefix, so caches never mix the two).
//
// The Manager owns the HTTP side of HLS: file names, caching headers,
// CORS, the per-address bound on blocking requests and the viewer count.
// Who may read a stream is the caller's: Config.Verify runs on every
// request and Config.Authorize once per viewer.
package hls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/parley/parley/internal/limit"
	"github.com/parley/parley/internal/tap"
)

// Reader is what a muxer reads a stream from: an internal/tap reader.
type Reader interface {
	Tracks() []tap.Track
	Read(ctx context.Context) (tap.Frame, error)
	Stats() tap.ReaderStats
	Close()
}

// Config configures a Manager. Open is required.
type Config struct {
	// Open starts reading a stream; it waits (ctx) for the first video
	// keyframe and answers tap.ErrNotLive for a stream with no publisher.
	Open func(ctx context.Context, stream string) (Reader, error)
	// Verify checks each request's right to read stream (the token);
	// nil allows everything. Its error is written with httperr.Auth.
	Verify func(r *http.Request, stream string) error
	// Authorize admits a new viewer (once per viewer of a muxer, see
	// Viewers); end is called when the viewer has gone. Nil admits all.
	Authorize func(r *http.Request, stream, id string) (end func(), err error)
	// ClientAddr is the client's address (trusted proxies applied); nil
	// uses the connection's.
	ClientAddr func(r *http.Request) netip.Addr
	// Idle stops a muxer no HLS request reached for this long (30 s).
	Idle time.Duration
	// StartTimeout bounds how long a first playlist request waits for
	// the stream's first segment (10 s).
	StartTimeout time.Duration
	// Stall ends a muxer whose stream sent no frame for this long (10 s),
	// which also releases every blocking request waiting on it.
	Stall time.Duration
	// Part is the parts' minimum duration (200 ms); Segment the
	// segments' minimum duration (1 s; a segment starts at a keyframe).
	Part, Segment time.Duration
	// BlockingPerIP bounds the blocking playlist and preload-hint
	// requests one client address may have waiting at once (100).
	BlockingPerIP int
	// RatePerIP bounds the requests per second one client address may
	// make, in bursts of as many (300: a player makes 10-30).
	RatePerIP int
	// ViewerWindow is how long a viewer counts after its last playlist
	// request (5 s).
	ViewerWindow time.Duration
	Logger       *slog.Logger
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.Idle, 30*time.Second)
	set(&c.StartTimeout, 10*time.Second)
	set(&c.Stall, 10*time.Second)
	set(&c.Part, 200*time.Millisecond)
	set(&c.Segment, time.Second)
	set(&c.ViewerWindow, 5*time.Second)
	if c.BlockingPerIP <= 0 {
		c.BlockingPerIP = 100
	}
	if c.RatePerIP <= 0 {
		c.RatePerIP = 300
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// notLiveFor is how long a stream found not live answers so without
// asking the tap again.
const notLiveFor = time.Second

// Errors a stream's HLS can fail with (Status.Error says them in words).
var (
	// ErrUnsupported: the stream's codecs cannot be carried in HLS.
	ErrUnsupported = errors.New("hls: codec not supported")
	// ErrClosed: the Manager is closed.
	ErrClosed = errors.New("hls: closed")
)

// Manager serves the HLS of every stream. It is safe for concurrent use.
type Manager struct {
	cfg      Config
	ctx      context.Context
	cancel   context.CancelFunc
	blocking *limit.Conns
	rate     *limit.Rate
	wg       sync.WaitGroup

	mu      sync.Mutex
	muxers  map[string]*muxer
	always  map[string]bool // streams kept always on (Keep)
	lastErr map[string]string
	closed  bool
	stats   Stats
}

// Stats are the Manager's counters.
type Stats struct {
	Muxers        int    // muxers running
	Viewers       int    // viewers of all streams
	Started       uint64 // muxers started
	Requests      uint64 // HLS requests answered
	BlockRefused  uint64 // requests refused by BlockingPerIP
	RateRefused   uint64 // requests refused by RatePerIP
	FramesDropped uint64 // frames the muxers' readers skipped (fell behind)
}

// New returns a Manager; Close stops it.
func New(cfg Config) *Manager {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, ctx: ctx, cancel: cancel, blocking: limit.NewConns(cfg.BlockingPerIP), rate: limit.NewRate(cfg.RatePerIP, time.Second),
		muxers: map[string]*muxer{}, always: map[string]bool{}, lastErr: map[string]string{}}
}

// Close stops every muxer and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// Keep keeps a stream's muxer running whenever the stream is live (the
// stream's "hls: always"), from now until Close. It polls for the
// stream's publisher once a second while the stream is not live.
func (m *Manager) Keep(stream string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.always[stream] {
		return
	}
	m.always[stream] = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if mx, err := m.muxer(stream); err == nil {
				select {
				case <-mx.done:
				case <-m.ctx.Done():
					return
				}
			}
			select {
			case <-t.C:
			case <-m.ctx.Done():
				return
			}
		}
	}()
}

// muxer returns the stream's running muxer, starting one if none runs.
func (m *Manager) muxer(stream string) (*muxer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if mx, ok := m.muxers[stream]; ok {
		return mx, nil
	}
	mx := newMuxer(m, stream, m.always[stream])
	m.muxers[stream] = mx
	m.stats.Started++
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := mx.run(m.ctx)
		if errors.Is(err, tap.ErrNotLive) {
			// Kept (done, failed) a moment, so that players polling a stream
			// that is not live get their 404 without a muxer started for each.
			t := time.NewTimer(notLiveFor)
			select {
			case <-t.C:
			case <-m.ctx.Done():
				t.Stop()
			}
		}
		m.mu.Lock()
		if m.muxers[stream] == mx {
			delete(m.muxers, stream)
		}
		if errors.Is(err, ErrUnsupported) {
			m.lastErr[stream] = err.Error()
		} else {
			delete(m.lastErr, stream)
		}
		m.stats.FramesDropped += mx.dropped()
		m.mu.Unlock()
		if err != nil {
			m.cfg.Logger.Debug("hls muxer stopped", "stream", stream, "reason", err)
		}
	}()
	return mx, nil
}

// Status is a stream's HLS as GET /api/streams/{name} reports it.
type Status struct {
	// State is "idle" (no muxer: it starts with the first request),
	// "starting", "live", or "unsupported" (Error says why).
	State   string `json:"state"`
	Viewers int    `json:"viewers"`
	Error   string `json:"error,omitempty"`
	// Notes are what the HLS of the stream leaves out, in words (a G.711
	// audio track HLS cannot carry).
	Notes []string `json:"notes,omitempty"`
}

// Status reports a stream's HLS.
func (m *Manager) Status(stream string) Status {
	m.mu.Lock()
	mx, ok := m.muxers[stream]
	lastErr := m.lastErr[stream]
	m.mu.Unlock()
	if !ok {
		if lastErr != "" {
			return Status{State: "unsupported", Error: lastErr}
		}
		return Status{State: "idle"}
	}
	return mx.status()
}

// Viewers is the number of viewers of a stream's HLS: distinct clients
// (address, user agent, token) whose last playlist request is at most
// Config.ViewerWindow old.
func (m *Manager) Viewers(stream string) int {
	m.mu.Lock()
	mx, ok := m.muxers[stream]
	m.mu.Unlock()
	if !ok {
		return 0
	}
	return mx.viewers.count()
}

// AllViewers are the viewers of every stream with a running muxer.
func (m *Manager) AllViewers() map[string]int {
	m.mu.Lock()
	list := make([]*muxer, 0, len(m.muxers))
	for _, mx := range m.muxers {
		list = append(list, mx)
	}
	m.mu.Unlock()
	out := make(map[string]int, len(list))
	for _, mx := range list {
		out[mx.stream] = mx.viewers.count()
	}
	return out
}

// Stats reports the Manager's counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	st := m.stats
	st.Muxers = len(m.muxers)
	list := make([]*muxer, 0, len(m.muxers))
	for _, mx := range m.muxers {
		list = append(list, mx)
	}
	m.mu.Unlock()
	for _, mx := range list {
		st.Viewers += mx.viewers.count()
		st.FramesDropped += mx.dropped()
	}
	return st
}

// Streams lists the streams with a running muxer, sorted.
func (m *Manager) Streams() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.muxers))
	for s := range m.muxers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func (m *Manager) count(f func(*Stats)) {
	m.mu.Lock()
	f(&m.stats)
	m.mu.Unlock()
}

// errorf wraps err with the stream's name.
func errorf(stream string, err error) error { return fmt.Errorf("stream %s: %w", stream, err) }
