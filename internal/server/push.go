package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/push"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
	"github.com/parley/parley/pkg/protocol"
)

// Restreaming: the streams' push: destinations in the configuration file,
// and those added through the management API (GET/POST
// /api/streams/{name}/push, DELETE /api/streams/{name}/push/{id}; kept in
// <data-dir>/pushes.json), are pushed by a push.Manager once media runs.

// maxPushBody bounds a POST /api/streams/{name}/push body.
const maxPushBody = 4 << 10

// startPushes starts the configured pushes; it needs the taps.
func (s *Server) startPushes() error {
	if s.taps == nil {
		return nil
	}
	stored, err := push.LoadFile(s.pushesFile())
	if err != nil {
		return fmt.Errorf("destinations added through the API: %w", err)
	}
	m := push.New(push.Config{Open: s.openPush, Logger: s.log})
	for name, st := range s.cfg.Streams {
		for i, raw := range st.Push {
			if _, err := m.Add(name, raw, originConfig); err != nil {
				m.Close()
				return fmt.Errorf("streams.%s.push[%d]: %w", name, i, err)
			}
		}
	}
	for name, urls := range stored {
		for i, raw := range urls {
			_, err := m.Add(name, raw, originAPI)
			if errors.Is(err, push.ErrExists) {
				s.log.Warn("a push added through the API is also in the configuration file; the file's wins", "stream", name, "id", push.ID(raw))
				continue
			}
			if err != nil {
				m.Close()
				return fmt.Errorf("%s: stream %s, push %d: %w", s.pushesFile(), name, i, err)
			}
		}
	}
	s.pushes = m
	for _, st := range push.States {
		s.metrics.GaugeFunc("parley_push_destinations_"+string(st), "Restreaming destinations "+pushStateHelp[st]+".",
			func() float64 { return float64(m.Count()[st]) })
	}
	s.metrics.CounterFunc("parley_push_bytes_sent_total", "Bytes sent to restreaming destinations.", func() float64 { return float64(m.Stats().BytesSent) })
	s.metrics.CounterFunc("parley_push_reconnects_total", "Restreaming connections after a destination's first.", func() float64 { return float64(m.Stats().Reconnects) })
	return nil
}

var pushStateHelp = map[push.State]string{
	push.Waiting:    "waiting for their stream to go live",
	push.Connecting: "connecting",
	push.Live:       "live",
	push.Backoff:    "waiting to retry after a failure (see the management API for the reason)",
}

// pushKeyframeInterval is how often a push asks a publisher that sends
// keyframes only when asked (a browser) for one.
const pushKeyframeInterval = 2 * time.Second

// pushKeyframeWait bounds the wait for a live stream's first keyframe.
const pushKeyframeWait = 10 * time.Second

// openPush reads a stream for a push: AAC audio (Opus transcoded once per
// stream), from its first keyframe, with a keyframe at least every
// pushKeyframeInterval (what YouTube and Twitch ask of their ingest).
func (s *Server) openPush(ctx context.Context, stream string) (push.Reader, error) {
	octx, cancel := context.WithTimeout(ctx, pushKeyframeWait)
	defer cancel()
	r, err := s.taps.Open(octx, sfu.Streams, stream, tap.Options{AAC: true, KeyframeInterval: pushKeyframeInterval})
	switch {
	case err == nil:
		return r, nil
	case octx.Err() != nil && ctx.Err() == nil:
		return nil, fmt.Errorf("no keyframe from the publisher within %s", pushKeyframeWait)
	}
	return nil, err
}

// pushesFile is where destinations added through the API are kept.
func (s *Server) pushesFile() string { return filepath.Join(s.cfg.DataDir, push.FileName) }

// savePushes writes the API's destinations to the data directory (called
// with pushesMu held); on failure it answers 500.
func (s *Server) savePushes(w http.ResponseWriter) bool {
	if err := push.SaveFile(s.pushesFile(), s.pushes.URLs(originAPI)); err != nil {
		s.log.Error("saving the push destinations", "err", err)
		httperr.Write(w, http.StatusInternalServerError, "internal", "the change is live but could not be saved: "+err.Error())
		return false
	}
	return true
}

func (s *Server) stopPushes() {
	if s.pushes != nil {
		s.pushes.Close()
	}
}

// Pushes is every restreaming destination with its status (URLs
// redacted), for the status page; nil when media is off.
func (s *Server) Pushes() []push.Status {
	if s.pushes == nil {
		return nil
	}
	return s.pushes.All()
}

// pushRoutes adds the restreaming API to a mux: the ops listener's, and
// the main port's (where it answers admin tokens only).
func (s *Server) pushRoutes(mux *http.ServeMux, public bool) {
	h := func(f http.HandlerFunc) http.HandlerFunc {
		if !public {
			return f
		}
		return func(w http.ResponseWriter, r *http.Request) {
			if s.auth == nil {
				httperr.Write(w, http.StatusNotFound, "not_found", "restreaming is managed on the operations listener (--ops), not on this port of an open server")
				return
			}
			f(w, r)
		}
	}
	mux.HandleFunc("GET /api/streams/{name}/push", h(s.listPushes))
	mux.HandleFunc("POST /api/streams/{name}/push", h(s.addPush))
	mux.HandleFunc("DELETE /api/streams/{name}/push/{id}", h(s.deletePush))
}

// pushReady answers the API's preliminaries: the stream name, the admin
// grant, media on.
func (s *Server) pushReady(w http.ResponseWriter, r *http.Request) (string, bool) {
	name, ok := cameraName(w, r)
	if !ok || !s.requireAdmin(w, r, "restreaming") {
		return "", false
	}
	if s.pushes == nil {
		httperr.Write(w, http.StatusServiceUnavailable, "media-off", "this server runs without media (--media-udp off)")
		return "", false
	}
	return name, true
}

func (s *Server) listPushes(w http.ResponseWriter, r *http.Request) {
	name, ok := s.pushReady(w, r)
	if !ok {
		return
	}
	list := s.pushes.List(name)
	if list == nil {
		list = []push.Status{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"stream": name, "push": list})
}

// addPush adds a destination: {"url": "rtmp://…"}.
func (s *Server) addPush(w http.ResponseWriter, r *http.Request) {
	name, ok := s.pushReady(w, r)
	if !ok {
		return
	}
	var body struct {
		URL string `json:"url"`
	}
	if !readJSON(w, r, maxPushBody, &body, `{"url": "rtmp://…"}`) {
		return
	}
	s.pushesMu.Lock()
	defer s.pushesMu.Unlock()
	st, err := s.pushes.Add(name, body.URL, originAPI)
	switch {
	case errors.Is(err, push.ErrExists):
		httperr.Write(w, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, push.ErrFull):
		httperr.Write(w, http.StatusConflict, "too_many", err.Error())
	case err != nil:
		httperr.Write(w, http.StatusBadRequest, protocol.CodeBadField, err.Error())
	default:
		if s.savePushes(w) {
			writeJSON(w, http.StatusCreated, st)
		}
	}
}

// deletePush stops and forgets a destination added through the API.
func (s *Server) deletePush(w http.ResponseWriter, r *http.Request) {
	name, ok := s.pushReady(w, r)
	if !ok {
		return
	}
	s.pushesMu.Lock()
	defer s.pushesMu.Unlock()
	switch err := s.pushes.Remove(name, r.PathValue("id"), originAPI); {
	case errors.Is(err, push.ErrNotFound):
		httperr.Write(w, http.StatusNotFound, "not_found", "stream "+name+" has no push "+r.PathValue("id"))
	case errors.Is(err, push.ErrFromConfig):
		httperr.Write(w, http.StatusConflict, "config_push", err.Error())
	case err != nil:
		httperr.Write(w, http.StatusInternalServerError, "internal", err.Error())
	default:
		if s.savePushes(w) {
			w.WriteHeader(http.StatusNoContent)
		}
	}
}
