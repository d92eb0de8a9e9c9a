// Package camera pulls streams from IP cameras (any RTSP server) into the
// SFU: each configured stream has one goroutine that connects with
// gortsplib's client, turns the camera's tracks into an ingest.Publisher
// (H.264 as access units, AAC transcoded to Opus, Opus and G.711 framed,
// VP8/VP9/AV1 passed through), holds the stream name against other
// publishers while live, and reconnects with capped, jittered exponential
// backoff when the camera goes. An on-demand stream connects when a viewer
// asks for it (Demand) and disconnects after an idle time without viewers.
//
// Each stream's status (idle, connecting, live, error with the reason in
// words) is what the management API, /metrics and the watch page show.
// Camera passwords never leave the package: URLs and error texts are
// redacted.
package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/backoff"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/redact"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/protocol"
)

// Source is one camera's settings.
type Source = config.Stream

// State is where a pull stands.
type State string

const (
	// Idle: an on-demand stream nobody watches.
	Idle State = "idle"
	// Connecting: dialing, DESCRIBE/SETUP/PLAY, or waiting to retry after
	// an error while viewers wait.
	Connecting State = "connecting"
	// Live: the camera plays and its tracks are in the SFU.
	Live State = "live"
	// Error: the last attempt failed; Status.Error says why. Always-on
	// streams retry after a backoff, on-demand ones at the next viewer.
	Error State = "error"
)

// States lists every state (for metrics).
var States = []State{Idle, Connecting, Live, Error}

// Status is one stream's state.
type Status struct {
	State State `json:"state"`
	// Since is when the stream went live, idle or offline: retrying
	// (connecting, error, connecting…) counts as one offline spell.
	Since time.Time `json:"since"`
	// Error is the last failure in words ("connection refused", "timed
	// out", "401 unauthorized", "no supported track: H265"); it stays while
	// the stream retries and is cleared when it goes live.
	Error string `json:"error,omitempty"`
	// Tracks describes the live tracks, e.g. "H.264, AAC→Opus".
	Tracks string `json:"tracks,omitempty"`
	// Attempts counts connection attempts since the stream was added.
	Attempts uint64 `json:"attempts"`
}

// Info is a stream as listed: its settings (URL redacted) and status.
type Info struct {
	Name      string `json:"name"`
	Source    string `json:"source"`
	Transport string `json:"transport"`
	OnDemand  bool   `json:"on_demand"`
	// IdleTimeout is the on-demand idle time in effect.
	IdleTimeout string `json:"idle_timeout,omitempty"`
	// Origin is "config" (the configuration file; not removable through
	// the API) or "api".
	Origin string `json:"origin"`
	Status Status `json:"status"`
}

// Config configures a Manager.
type Config struct {
	SFU *sfu.SFU
	// Claim takes the stream name while a pull is live (WHIP's
	// ClaimStream); nil holds no name.
	Claim ingest.Claimer
	// FFmpeg is the ffmpeg binary for AAC; "" looks it up on PATH.
	FFmpeg string
	// Registry, when set, lists live pulls with the other ingests.
	Registry *ingest.Registry
	// MinBackoff and MaxBackoff bound the wait between attempts (doubling
	// from Min, capped at Max, ±20 % jitter); 0 means 1 s and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds dialing and each RTSP read; 0 means 10 s.
	Timeout time.Duration
	// IdleTimeout is the default on-demand idle time; 0 means 30 s.
	IdleTimeout time.Duration
	// MaxStreams bounds the streams pulled at once; 0 means 256.
	MaxStreams int
	// OnStatus, when set, is told every status change (tests wait on it).
	OnStatus func(name string, st Status)
	Logger   *slog.Logger
}

// Manager runs the pulls.
type Manager struct {
	cfg Config
	log *slog.Logger

	received, lost atomic.Uint64 // RTP packets from cameras, and lost on the way

	mu      sync.Mutex
	streams map[string]*stream
	closed  bool
	wg      sync.WaitGroup
}

// stream is one camera and its goroutine.
type stream struct {
	name   string
	src    Source
	origin string
	cancel context.CancelFunc
	done   chan struct{}
	demand chan struct{} // one pending wake-up for an on-demand stream
	// changed is closed and replaced at every status change.
	changed chan struct{}
	st      Status
}

// New makes a Manager; streams are added with Add.
func New(cfg Config) *Manager {
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 256
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log.With("component", "camera"), streams: map[string]*stream{}}
}

// Errors of Add and Remove.
var (
	ErrExists   = errors.New("stream already configured")
	ErrNotFound = errors.New("no such camera stream")
	ErrClosed   = errors.New("camera manager closed")
	ErrFull     = errors.New("too many camera streams")
)

// Add starts pulling a stream (an on-demand one waits for its first
// viewer). origin is "config" or "api".
func (m *Manager) Add(name string, src Source, origin string) error {
	if !protocol.ValidRoom(name) {
		return fmt.Errorf("%q is not a stream name", name)
	}
	if err := src.Check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{name: name, src: src, origin: origin, cancel: cancel, done: make(chan struct{}),
		demand: make(chan struct{}, 1), changed: make(chan struct{})}
	s.st = Status{State: Connecting, Since: time.Now()}
	if src.OnDemand {
		s.st.State = Idle
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		cancel()
		return ErrClosed
	case m.streams[name] != nil:
		cancel()
		return fmt.Errorf("%s: %w", name, ErrExists)
	case len(m.streams) >= m.cfg.MaxStreams:
		cancel()
		return fmt.Errorf("%s: %w (at most %d)", name, ErrFull, m.cfg.MaxStreams)
	}
	m.streams[name] = s
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(s.done)
		m.run(ctx, s)
	}()
	m.log.Info("camera added", "stream", name, "source", redact.URL(src.Source, false), "on_demand", src.OnDemand, "origin", origin)
	return nil
}

// Remove stops a stream's pull and forgets it, waiting for its goroutine.
func (m *Manager) Remove(name string) error {
	m.mu.Lock()
	s := m.streams[name]
	delete(m.streams, name)
	m.mu.Unlock()
	if s == nil {
		return fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	s.cancel()
	<-s.done
	m.log.Info("camera removed", "stream", name)
	return nil
}

// Origin is where a stream was declared ("config" or "api"); ok is false
// for an unknown stream.
func (m *Manager) Origin(name string) (origin string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[name]; s != nil {
		return s.origin, true
	}
	return "", false
}

// Status is a stream's status; ok is false for an unknown stream.
func (m *Manager) Status(name string) (st Status, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[name]; s != nil {
		return s.st, true
	}
	return Status{}, false
}

// Get describes one stream.
func (m *Manager) Get(name string) (Info, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[name]
	if s == nil {
		return Info{}, false
	}
	return m.infoLocked(s), true
}

// List describes every stream, by name.
func (m *Manager) List() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Info, 0, len(m.streams))
	for _, s := range m.streams {
		out = append(out, m.infoLocked(s))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (m *Manager) infoLocked(s *stream) Info {
	tr := s.src.Transport
	if tr == "" {
		tr = "auto"
	}
	in := Info{Name: s.name, Source: redact.URL(s.src.Source, false), Transport: tr, OnDemand: s.src.OnDemand, Origin: s.origin, Status: s.st}
	if s.src.OnDemand {
		in.IdleTimeout = m.idle(s.src).String()
	}
	return in
}

// Sources are the settings of the streams of one origin, by name.
func (m *Manager) Sources(origin string) map[string]Source {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Source{}
	for name, s := range m.streams {
		if s.origin == origin {
			out[name] = s.src
		}
	}
	return out
}

// Stats are packet counts over every pull since the Manager started.
type Stats struct {
	Received uint64 // RTP packets read from cameras
	Lost     uint64 // RTP packets the cameras sent that never arrived (sequence gaps)
}

// Stats counts packets.
func (m *Manager) Stats() Stats { return Stats{Received: m.received.Load(), Lost: m.lost.Load()} }

// Count is how many streams are in each state.
func (m *Manager) Count() map[State]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[State]int{}
	for _, s := range m.streams {
		out[s.st.State]++
	}
	return out
}

// Demand tells an on-demand stream that a viewer wants it and waits
// (until ctx ends) for it to go live; it reports whether it is live. For
// an always-on stream it only waits; for an unknown one it is false at
// once.
func (m *Manager) Demand(ctx context.Context, name string) bool {
	m.mu.Lock()
	s := m.streams[name]
	m.mu.Unlock()
	if s == nil {
		return false
	}
	select {
	case s.demand <- struct{}{}:
	default:
	}
	tried := false // an attempt began after the ask: its failure ends the wait
	for {
		m.mu.Lock()
		state, changed := s.st.State, s.changed
		m.mu.Unlock()
		switch {
		case state == Live:
			return true
		case state == Connecting:
			tried = true
		case tried:
			return false
		}
		select {
		case <-changed:
		case <-s.done:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Close stops every pull and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	for _, s := range m.streams {
		s.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// set records a status change.
func (m *Manager) set(s *stream, f func(st *Status)) {
	m.mu.Lock()
	old := s.st
	f(&s.st)
	if offline := func(x State) bool { return x == Connecting || x == Error }; s.st.State != old.State && !(offline(old.State) && offline(s.st.State)) {
		s.st.Since = time.Now()
	}
	st := s.st
	close(s.changed)
	s.changed = make(chan struct{})
	m.mu.Unlock()
	if m.cfg.OnStatus != nil {
		m.cfg.OnStatus(s.name, st)
	}
}

func (m *Manager) idle(src Source) time.Duration {
	if d := src.IdleTimeout.D(); d > 0 {
		return d
	}
	return m.cfg.IdleTimeout
}

// errIdle ends an on-demand pull nobody watches.
var errIdle = errors.New("no viewers")

// run is a stream's life: wait for a viewer (on demand), pull, and after
// a failure wait out the backoff and try again.
func (m *Manager) run(ctx context.Context, s *stream) {
	bo := backoff.Backoff{Min: m.cfg.MinBackoff, Max: m.cfg.MaxBackoff}
	log := m.log.With("stream", s.name)
	for {
		if s.src.OnDemand {
			select {
			case <-s.demand:
			case <-ctx.Done():
				return
			}
		}
		m.set(s, func(st *Status) { st.State = Connecting; st.Attempts++ })
		wasLive, err := m.pull(ctx, s, log)
		if ctx.Err() != nil {
			return
		}
		if wasLive {
			bo.Reset()
		}
		if errors.Is(err, errIdle) {
			log.Info("camera stopped: no viewers")
			m.set(s, func(st *Status) { st.State, st.Tracks = Idle, "" })
			continue
		}
		reason := Reason(err, s.src.Source)
		wait := bo.Next()
		log.Warn("camera pull failed", "err", redact.Text(err.Error(), s.src.Source), "retry_in", wait)
		m.set(s, func(st *Status) { st.State, st.Error, st.Tracks = Error, reason, "" })
		if !backoff.Sleep(ctx, wait) {
			return
		}
		// An on-demand stream tries again at the next viewer (one who
		// asked meanwhile is kept in s.demand).
	}
}
