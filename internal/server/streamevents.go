package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/show"
	"github.com/parley/parley/pkg/protocol"
)

// GET /api/streams/{name}/events: the stream's status pushed as
// Server-Sent Events, so the watch and broadcast pages need not poll
// /api/streams/{name}. Server-Sent Events rather than a WebSocket: one way,
// plain HTTP (proxies, HTTP/2), and the browser's EventSource reconnects by
// itself. Each event is "event: status" with the same JSON as the GET:
// one at once, then one whenever it changes. Changes come from the SFU
// (a join, a leave, a track published or ended) and the camera pulls, not
// from polling: each connection holds a one-slot wake-up channel, so a
// change never waits for a slow reader (the reader computes the latest
// status when it wakes). Live, tracks and the source are sent at once;
// changes of the viewer count alone at most once a second. A comment every
// 25 s keeps proxies from closing an idle connection. Same access as the
// GET (a token for the stream, as ?token= since EventSource sends no
// headers); at most streamEventsPerIP connections per client address.
const (
	streamEventsPerIP        = 16
	streamEventsHeartbeat    = 25 * time.Second
	streamEventsMinGap       = time.Second      // between events that only change counts
	streamEventsWriteTimeout = 10 * time.Second // one event to a client that stopped reading
)

// streamWatchers wakes the event streams of a stream name when its state
// may have changed.
type streamWatchers struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func newStreamWatchers() *streamWatchers {
	return &streamWatchers{subs: map[string]map[chan struct{}]struct{}{}}
}

// watch returns a channel woken (never blocking the waker, at most one
// pending wake-up) after each change of the stream, and stop.
func (w *streamWatchers) watch(name string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	if w.subs[name] == nil {
		w.subs[name] = map[chan struct{}]struct{}{}
	}
	w.subs[name][ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.subs[name], ch)
		if len(w.subs[name]) == 0 {
			delete(w.subs, name)
		}
		w.mu.Unlock()
	}
}

// notify wakes every watcher of name.
func (w *streamWatchers) notify(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs[name] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending: it will read the latest state
		}
	}
}

// roomChanged is the SFU's OnRoomChange: streams' rooms wake their
// events; a show's audio tells its screens whether it is on air.
func (s *Server) roomChanged(ns sfu.Namespace, name string) {
	s.clusterRoomChanged(ns, name)
	switch ns {
	case sfu.Streams:
		s.streamWatch.notify(name)
	case sfu.Shows:
		if sh, ok := show.ShowOfStream(name); ok {
			s.shows.AudioChanged(sh)
		}
	}
}

// streamEvents serves GET /api/streams/{name}/events.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !protocol.ValidRoom(name) {
		httperr.Write(w, http.StatusBadRequest, protocol.CodeInvalidRoom, "stream names are 1-64 characters of A-Z a-z 0-9 _ . -")
		return
	}
	if !s.allowStreamStatus(w, r) {
		return
	}
	release, ok := s.streamEventConns.Acquire(s.clients.Request(r))
	if !ok {
		httperr.TooMany(w, streamEventsHeartbeat, fmt.Sprintf("at most %d stream event connections per client address", streamEventsPerIP))
		return
	}
	defer release()
	rc := http.NewResponseController(w)
	// A long-lived answer: no deadline for the whole of it, one per write
	// instead, so a client that stops reading is let go.
	write := func(format string, args ...any) error {
		_ = rc.SetWriteDeadline(time.Now().Add(streamEventsWriteTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	wake, stop := s.streamWatch.watch(name)
	defer stop()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	var (
		last     streamStatus
		lastJSON []byte
		sentAt   time.Time
		due      <-chan time.Time // a held-back count change
	)
	send := func() error {
		st := s.currentStreamStatus(name)
		b, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("stream events: %w", err)
		}
		if bytes.Equal(b, lastJSON) {
			return nil
		}
		if lastJSON != nil && sameStreamState(last, st) {
			if wait := streamEventsMinGap - time.Since(sentAt); wait > 0 {
				if due == nil {
					due = time.After(wait)
				}
				return nil
			}
		}
		due = nil
		if err := write("event: status\ndata: %s\n\n", b); err != nil {
			return err
		}
		last, lastJSON, sentAt = st, b, time.Now()
		return nil
	}
	if err := send(); err != nil {
		return
	}
	beat := time.NewTicker(streamEventsHeartbeat)
	defer beat.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-s.quit.Done():
			return
		case <-wake:
			err = send()
		case <-due:
			due = nil
			err = send()
		case <-beat.C:
			err = write(": keep-alive\n\n")
		}
		if err != nil {
			return
		}
	}
}

// sameStreamState reports whether a and b differ at most in counts
// (viewers, HLS viewers): such changes are sent at most once a second.
func sameStreamState(a, b streamStatus) bool {
	if a.Live != b.Live || a.Tracks != b.Tracks || !reflect.DeepEqual(a.Source, b.Source) {
		return false
	}
	if (a.HLS == nil) != (b.HLS == nil) {
		return false
	}
	return a.HLS == nil || a.HLS.State == b.HLS.State
}
