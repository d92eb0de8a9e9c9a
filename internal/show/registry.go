// Package show runs Parley's light shows: a host plays audio (published
// over WHIP as the stream "show-<name>") to a wall of screens (playing it
// over WHEP); each screen paints the level of its own frequency band.
//
// This package owns the control plane: a registry of shows, the screens of
// each in layout order with their bands, the show's palette, and a
// WebSocket control channel per host page and per screen, plus the HTTP
// broadcast endpoint. See docs/show.md for the protocol.
package show

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/origin"
)

// ICEServer is an RTCIceServer as a browser takes it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Options configure a Registry. Zero values mean the defaults noted.
type Options struct {
	// Verify authorizes a request for a show in a role; nil allows all.
	// An error wrapping ErrForbidden means 403, any other error 401.
	Verify func(r *http.Request, show string, role Role) error
	// ICEServers are handed to pages in the hello message (may be nil).
	ICEServers func(r *http.Request) []ICEServer
	// Origins are the web pages that may open the control WebSocket; nil
	// allows loopback pages only. It is judged against the server's own
	// names, never the request's Host (DNS rebinding).
	Origins *origin.Policy
	// Grace keeps a disconnected screen's place and band this long so a
	// reconnecting screen (same key) resumes it; default 10 s, <0 none.
	Grace time.Duration
	// PingInterval is the WebSocket keepalive period; default 20 s.
	PingInterval time.Duration
	// HostInterval is the shortest gap between two screen lists sent to
	// a host (levels are coalesced); default 100 ms.
	HostInterval time.Duration
	MaxShows     int // default 1000
	MaxScreens   int // per show; default 1000
	MaxHosts     int // per show; default 16
	Outbox       int // per connection, messages; default 128
	// AudioLive says whether a show's audio stream is published now; nil
	// means never (screens then learn nothing and retry on their own).
	// Call AudioChanged when it may have changed.
	AudioLive func(show string) bool
	Logger    *slog.Logger
}

// ErrForbidden marks a Verify error as 403 insufficient_scope
// (authenticated, not allowed); it is httperr.ErrInsufficientScope.
var ErrForbidden = httperr.ErrInsufficientScope

// Registry holds the shows by name.
type Registry struct {
	o      Options
	log    *slog.Logger
	epoch  string // random per registry: pages detect a server restart
	closed atomic.Bool

	mu    sync.Mutex
	shows map[string]*show

	conns sync.WaitGroup // running connection handlers
}

// NewRegistry makes an empty registry.
func NewRegistry(o Options) *Registry {
	if o.Grace == 0 {
		o.Grace = 10 * time.Second
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 20 * time.Second
	}
	if o.HostInterval <= 0 {
		o.HostInterval = 100 * time.Millisecond
	}
	if o.MaxShows <= 0 {
		o.MaxShows = 1000
	}
	if o.MaxScreens <= 0 {
		o.MaxScreens = 1000
	}
	if o.MaxHosts <= 0 {
		o.MaxHosts = 16
	}
	if o.Outbox <= 0 {
		o.Outbox = 128
	}
	if o.Origins == nil {
		o.Origins = origin.New(nil, nil)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{o: o, log: log.With("component", "show"), epoch: newKey(), shows: map[string]*show{}}
}

var (
	errClosed   = errors.New("server is shutting down")
	errTooMany  = errors.New("too many shows")
	errSlow     = errors.New("outbox full: the client reads too slowly")
	errReplaced = errors.New("the screen reconnected elsewhere")
)

// acquire finds or creates a show and takes a reference on it; every
// acquire is paired with one release. It also counts a running
// connection handler (paired with r.conns.Done).
func (r *Registry) acquire(name string) (*show, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return nil, errClosed
	}
	r.conns.Add(1)
	sh := r.shows[name]
	if sh == nil {
		if len(r.shows) >= r.o.MaxShows {
			r.conns.Done()
			return nil, errTooMany
		}
		sh = newShow(r, name)
		r.shows[name] = sh
		r.log.Info("show opened", "show", name)
	}
	sh.refs++
	return sh, nil
}

// release drops a reference; the last one removes the show.
func (r *Registry) release(sh *show) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sh.refs--
	if sh.refs == 0 && r.shows[sh.name] == sh {
		delete(r.shows, sh.name)
		r.log.Info("show closed", "show", sh.name)
	}
}

// AudioChanged tells the show's screens (those told otherwise) whether its
// audio is published now ({"type":"air"}); the server calls it when the
// audio stream's publishers change.
func (r *Registry) AudioChanged(name string) {
	if sh := r.lookup(name); sh != nil {
		sh.audioChanged()
	}
}

// audioLive asks Options.AudioLive.
func (r *Registry) audioLive(name string) bool {
	return r.o.AudioLive != nil && r.o.AudioLive(name)
}

// lookup returns a live show or nil.
func (r *Registry) lookup(name string) *show {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.shows[name]
}

// Close disconnects every page and waits (bounded by ctx) for the
// connection handlers to return.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed.Store(true)
	shows := make([]*show, 0, len(r.shows))
	for _, sh := range r.shows {
		shows = append(shows, sh)
	}
	r.mu.Unlock()
	for _, sh := range shows {
		sh.shutdown()
	}
	done := make(chan struct{})
	go func() {
		r.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Names lists the open shows (sorted).
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.shows))
	for n := range r.shows {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Counts reports the open shows, their screens (online or in their grace
// period) and host pages, for metrics.
func (r *Registry) Counts() (shows, screens, hosts int) {
	r.mu.Lock()
	list := make([]*show, 0, len(r.shows))
	for _, sh := range r.shows {
		list = append(list, sh)
	}
	r.mu.Unlock()
	for _, sh := range list {
		sh.mu.Lock()
		screens += len(sh.screens)
		hosts += len(sh.hosts)
		sh.mu.Unlock()
	}
	return len(list), screens, hosts
}
