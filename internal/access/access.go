// Package access decides ingest.Requests after the token: the CIDR lists
// (global --publish-allow / --read-allow and per-stream allow and deny
// lists) and then the on_publish / on_play webhooks; it fires on_done when
// an authorized session ends. Every listener (RTMP, RTSP, SRT, WHIP, WHEP,
// the browser pages through WHIP/WHEP) reaches it through the server's one
// ingest.Authorizer, so the order and the answers are the same everywhere.
//
// Hooks are HTTP POSTs of a JSON Event. A 2xx answer allows; any other
// answer, a redirect, an unreachable hook or one slower than the timeout
// refuses. on_done is sent in the background through a bounded queue:
// when the queue is full the event is dropped, counted and logged, and the
// media path never waits for it. Tokens are never sent to hooks.
package access

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/ingest"
)

// Error codes of refusals (HTTP 403 bodies; the RTMP/RTSP/SRT refusals
// carry the same message).
const (
	CodeAddressDenied = "address_denied" // a CIDR list refused the client
	CodeHookRefused   = "hook_refused"   // on_publish / on_play answered non-2xx, failed or timed out
)

// Config configures a Checker.
type Config struct {
	Lists Lists
	// OnPublish, OnPlay and OnDone are hook URLs (http or https); "" is off.
	OnPublish, OnPlay, OnDone string
	// OnRecordDone is told of each finished recording file (RecordDone),
	// through the same queue and senders as on_done.
	OnRecordDone string
	// HookTimeout bounds each hook call; 0 means 5 s.
	HookTimeout time.Duration
	// DoneQueue bounds on_done events waiting to be sent; 0 means 1024.
	// DoneWorkers send them; 0 means 4.
	DoneQueue, DoneWorkers int
	// Client makes the hook calls; nil uses one that follows no redirects.
	Client *http.Client
	Logger *slog.Logger
	// Now is the clock for Event.Time; nil means time.Now.
	Now func() time.Time
}

// Event is the JSON body of every hook call.
type Event struct {
	// Action is "publish" or "play" (on_publish, on_play), or
	// "publish_done" / "play_done" (on_done).
	Action string `json:"action"`
	Proto  string `json:"proto"`  // rtmp, rtsp, srt, whip, whep, ...
	Stream string `json:"stream"` // the stream name
	Remote string `json:"remote"` // the client's IP address, "" when none (pulls)
	ID     string `json:"id"`     // the session; on_done carries the same id
	Time   string `json:"time"`   // RFC 3339 with milliseconds, UTC
	// Duration is the session's length in seconds (on_done only), or the
	// recording's (on_record_done).
	Duration *float64 `json:"duration,omitempty"`
	// Path, Size and Room describe a finished recording (on_record_done,
	// action "record_done"): its path on the server, its size in bytes,
	// and the group room it belongs to ("" for a stream's).
	Path string `json:"path,omitempty"`
	Size *int64 `json:"size,omitempty"`
	Room string `json:"room,omitempty"`
}

// Stats are the Checker's counters.
type Stats struct {
	AddressDenied uint64 // requests refused by a CIDR list
	HookRefused   uint64 // requests refused by on_publish / on_play
	DoneSent      uint64 // on_done (and on_record_done) calls answered 2xx
	DoneFailed    uint64 // on_done (and on_record_done) calls that failed or answered non-2xx
	DoneDropped   uint64 // on_done (and on_record_done) events dropped: queue full or closed
}

// Checker applies the lists and hooks.
type Checker struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client

	denied, refused, sent, failed, dropped atomic.Uint64

	mu     sync.RWMutex // guards closed against sends on queue
	closed bool
	queue  chan queued
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// queued is an event waiting for its hook.
type queued struct {
	hook, name string // URL, and the hook's name for logs
	ev         Event
}

// New starts a Checker (its on_done senders when OnDone is set).
func New(cfg Config) (*Checker, error) {
	for _, h := range []struct{ name, u string }{{"on_publish", cfg.OnPublish}, {"on_play", cfg.OnPlay}, {"on_done", cfg.OnDone}, {"on_record_done", cfg.OnRecordDone}} {
		if err := config.CheckHookURL(h.u); err != nil {
			return nil, fmt.Errorf("access: %s: %w", h.name, err)
		}
	}
	cfg.HookTimeout = cmp.Or(max(cfg.HookTimeout, 0), 5*time.Second)
	cfg.DoneQueue = cmp.Or(max(cfg.DoneQueue, 0), 1024)
	cfg.DoneWorkers = cmp.Or(max(cfg.DoneWorkers, 0), 4)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	c := &Checker{cfg: cfg, log: log.With("component", "access"), client: client}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if cfg.OnDone != "" || cfg.OnRecordDone != "" {
		c.queue = make(chan queued, cfg.DoneQueue)
		for range cfg.DoneWorkers {
			c.wg.Add(1)
			go c.sendDone()
		}
	}
	return c, nil
}

// Close stops taking on_done events and gives the queued ones one
// HookTimeout to be sent; it waits for the senders.
func (c *Checker) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.queue != nil {
		close(c.queue)
	}
	c.mu.Unlock()
	t := time.AfterFunc(c.cfg.HookTimeout, c.cancel)
	c.wg.Wait()
	t.Stop()
	c.cancel()
}

// Stats reports the counters.
func (c *Checker) Stats() Stats {
	return Stats{AddressDenied: c.denied.Load(), HookRefused: c.refused.Load(),
		DoneSent: c.sent.Load(), DoneFailed: c.failed.Load(), DoneDropped: c.dropped.Load()}
}

// hookAction names a request's action in hook events.
func hookAction(a ingest.Action) string {
	if a == ingest.Publish {
		return "publish"
	}
	return "play"
}

// Check decides r after its token was accepted: the CIDR lists, then the
// on_publish or on_play hook. On success end fires on_done once (further
// calls do nothing). A refusal is an *httperr.Denied (403 over HTTP).
func (c *Checker) Check(ctx context.Context, r ingest.Request) (end func(), err error) {
	publish := r.Action == ingest.Publish
	log := c.log.With("action", hookAction(r.Action), "proto", r.Proto, "stream", r.Stream, "remote", remoteString(r), "id", r.ID)
	if r.Proto != "pull" || r.Remote.IsValid() { // the server's own pulls have no client address
		if ok, why := c.cfg.Lists.Allows(r.Stream, publish, r.Remote); !ok {
			c.denied.Add(1)
			log.Info("refused by the CIDR lists", "reason", why)
			return nil, &httperr.Denied{Code: CodeAddressDenied, Message: hookAction(r.Action) + " refused: " + why}
		}
	}
	hook, name := c.cfg.OnPlay, "on_play"
	if publish {
		hook, name = c.cfg.OnPublish, "on_publish"
	}
	start := c.cfg.Now()
	if hook != "" {
		ev := c.event(r, hookAction(r.Action), start)
		if err := c.call(ctx, hook, ev); err != nil {
			c.refused.Add(1)
			log.Warn("refused by the "+name+" hook", "hook", redact(hook), "err", err)
			return nil, &httperr.Denied{Code: CodeHookRefused, Message: hookAction(r.Action) + " refused by the server's " + name + " hook"}
		}
	}
	if c.cfg.OnDone == "" {
		return func() {}, nil
	}
	var once sync.Once
	return func() { once.Do(func() { c.done(r, start) }) }, nil
}

func remoteString(r ingest.Request) string {
	if !r.Remote.IsValid() {
		return ""
	}
	return r.Remote.Unmap().String()
}

func (c *Checker) event(r ingest.Request, action string, at time.Time) Event {
	return Event{Action: action, Proto: r.Proto, Stream: r.Stream, Remote: remoteString(r), ID: r.ID,
		Time: at.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
}

// done queues the on_done event without waiting.
func (c *Checker) done(r ingest.Request, start time.Time) {
	now := c.cfg.Now()
	ev := c.event(r, hookAction(r.Action)+"_done", now)
	d := now.Sub(start).Seconds()
	ev.Duration = &d
	c.enqueue(queued{hook: c.cfg.OnDone, name: "on_done", ev: ev})
}

// Recording is a finished recording file, for RecordDone.
type Recording struct {
	Stream, Room, Path string
	Duration           time.Duration
	Size               int64
}

// RecordDone queues the on_record_done event of a finished recording
// file without waiting (nothing when the hook is off).
func (c *Checker) RecordDone(r Recording) {
	if c.cfg.OnRecordDone == "" {
		return
	}
	d, size := r.Duration.Seconds(), r.Size
	ev := Event{Action: "record_done", Proto: "record", Stream: r.Stream, Room: r.Room, Path: r.Path, Duration: &d, Size: &size,
		Time: c.cfg.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")}
	c.enqueue(queued{hook: c.cfg.OnRecordDone, name: "on_record_done", ev: ev})
}

// enqueue hands an event to the senders, or drops and counts it when
// the queue is full or closed.
func (c *Checker) enqueue(q queued) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		c.dropped.Add(1)
		c.log.Warn(q.name+" dropped: shutting down", "stream", q.ev.Stream, "id", q.ev.ID)
		return
	}
	select {
	case c.queue <- q:
	default:
		c.dropped.Add(1)
		c.log.Warn(q.name+" dropped: the queue is full (the hook is slower than events come)", "stream", q.ev.Stream, "id", q.ev.ID, "queue", cap(c.queue))
	}
}

func (c *Checker) sendDone() {
	defer c.wg.Done()
	for q := range c.queue {
		if err := c.call(c.ctx, q.hook, q.ev); err != nil {
			c.failed.Add(1)
			c.log.Warn(q.name+" hook failed", "hook", redact(q.hook), "stream", q.ev.Stream, "id", q.ev.ID, "err", err)
			continue
		}
		c.sent.Add(1)
	}
}

// errStatus is a hook's non-2xx answer.
var errStatus = errors.New("hook answered")

// call POSTs ev to hook within HookTimeout; only a 2xx answer is success.
func (c *Checker) call(ctx context.Context, hook string, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "parley-hook")
	resp, err := c.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s", c.cfg.HookTimeout)
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%w %s", errStatus, resp.Status)
	}
	return nil
}

// redact keeps a hook URL's scheme, host and path for logs (its query or
// user info may hold a secret).
func redact(hook string) string {
	u, err := url.Parse(hook)
	if err != nil {
		return "(bad URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
