package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/parley/parley/internal/camera"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/pkg/protocol"
)

// IP cameras: the streams in the configuration file and those added
// through the management API (kept in <data-dir>/streams.json) are pulled
// by a camera.Manager once media runs.

const (
	originConfig = "config"
	originAPI    = "api"
	// maxCameraBody bounds a PUT /api/cameras/{name} body.
	maxCameraBody = 16 << 10
)

// startCameras starts the configured and stored camera pulls; it needs
// the SFU and the WHIP handler (which holds the stream names).
func (s *Server) startCameras() error {
	stored, err := camera.LoadFile(s.camerasFile())
	if err != nil {
		return fmt.Errorf("streams added through the API: %w", err)
	}
	if s.sfu == nil {
		if len(s.cfg.Streams)+len(stored) > 0 {
			s.log.Warn("IP cameras are not pulled because media is off (--media-udp off)")
		}
		return nil
	}
	m := camera.New(camera.Config{SFU: s.sfu, Logger: s.log, Registry: s.sources, Claim: s.claimStream, MaxStreams: s.cfg.MaxCameras,
		OnStatus: func(name string, _ camera.Status) { s.streamWatch.notify(name) }})
	for name, st := range s.cfg.Streams {
		if !st.IsCamera() { // per-stream settings only
			continue
		}
		if err := m.Add(name, st, originConfig); err != nil {
			m.Close()
			return fmt.Errorf("streams.%s: %w", name, err)
		}
	}
	for name, st := range stored {
		if st, ok := s.cfg.Streams[name]; ok && st.IsCamera() {
			s.log.Warn("a stream added through the API is also in the configuration file; the file's wins", "stream", name)
			continue
		}
		if err := m.Add(name, st, originAPI); err != nil {
			m.Close()
			return fmt.Errorf("%s: stream %s: %w", s.camerasFile(), name, err)
		}
	}
	s.cameras = m
	for _, st := range camera.States {
		s.metrics.GaugeFunc("parley_camera_streams_"+string(st), "IP camera streams "+stateHelp[st]+".",
			func() float64 { return float64(m.Count()[st]) })
	}
	s.metrics.CounterFunc("parley_camera_packets_received_total", "RTP packets read from IP cameras.", func() float64 { return float64(m.Stats().Received) })
	s.metrics.CounterFunc("parley_camera_packets_lost_total", "RTP packets IP cameras sent that never arrived (sequence gaps).", func() float64 { return float64(m.Stats().Lost) })
	return nil
}

var stateHelp = map[camera.State]string{
	camera.Idle:       "idle (on demand, nobody watching)",
	camera.Connecting: "connecting to their camera",
	camera.Live:       "live",
	camera.Error:      "failing (see the management API for the reason)",
}

func (s *Server) stopCameras() {
	if s.cameras != nil {
		s.cameras.Close()
	}
}

// camerasFile is where streams added through the API are kept.
func (s *Server) camerasFile() string { return filepath.Join(s.cfg.DataDir, camera.FileName) }

// demandStream starts an on-demand camera for a WHEP viewer and waits
// for it to go live; a stream published on another node of the cluster
// is relayed here instead (cluster_media.go).
func (s *Server) demandStream(ctx context.Context, stream string) bool {
	if s.cameras != nil && s.cameras.Demand(ctx, stream) {
		return true
	}
	return s.demandRelay(ctx, stream)
}

// requireAdmin lets a request through on an open server, and with auth
// only with an admin token; otherwise it answers 401/403.
func (s *Server) requireAdmin(w http.ResponseWriter, r *http.Request, what string) bool {
	return s.requireAdminToken(w, r, what, false)
}

// requireAdminToken is requireAdmin that also takes the token from
// ?token= when query is set (links a browser follows: downloads).
func (s *Server) requireAdminToken(w http.ResponseWriter, r *http.Request, what string, query bool) bool {
	if s.auth == nil {
		return true
	}
	c, err := s.requestClaims(r, query)
	if err == nil && !c.Grants.Admin {
		err = fmt.Errorf("%w: %s need the admin grant", httperr.ErrInsufficientScope, what)
	}
	if err != nil {
		httperr.Auth(w, err)
		return false
	}
	return true
}

// cameraRoutes adds the management API of IP cameras to the ops mux.
func (s *Server) cameraRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/cameras", s.listCameras)
	mux.HandleFunc("GET /api/cameras/{name}", s.getCamera)
	mux.HandleFunc("PUT /api/cameras/{name}", s.putCamera)
	mux.HandleFunc("DELETE /api/cameras/{name}", s.deleteCamera)
}

// camerasReady answers the API's preliminaries: admin grant, media on.
func (s *Server) camerasReady(w http.ResponseWriter, r *http.Request) bool {
	if !s.requireAdmin(w, r, "camera streams") {
		return false
	}
	if s.cameras == nil {
		httperr.Write(w, http.StatusServiceUnavailable, "media-off", "this server runs without media (--media-udp off)")
		return false
	}
	return true
}

// readJSON decodes a management API's body (at most limit bytes, no
// unknown fields) into v; on failure it answers 413 or 400 and is false.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, what string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httperr.Write(w, http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, fmt.Sprintf("the body is over %d bytes", limit))
			return false
		}
		httperr.Write(w, http.StatusBadRequest, protocol.CodeBadJSON, "the body is not "+what+": "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) listCameras(w http.ResponseWriter, r *http.Request) {
	if !s.camerasReady(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"streams": s.cameras.List()})
}

// cameraName reads and checks the {name} of a request.
func cameraName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !protocol.ValidRoom(name) {
		httperr.Write(w, http.StatusBadRequest, protocol.CodeInvalidRoom, "stream names are 1-64 characters of A-Z a-z 0-9 _ . -")
		return "", false
	}
	return name, true
}

func (s *Server) getCamera(w http.ResponseWriter, r *http.Request) {
	name, ok := cameraName(w, r)
	if !ok || !s.camerasReady(w, r) {
		return
	}
	in, ok := s.cameras.Get(name)
	if !ok {
		httperr.Write(w, http.StatusNotFound, "not_found", "no camera stream "+name)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

// putCamera adds a camera stream, or replaces one added through the API;
// it is saved in the data directory.
func (s *Server) putCamera(w http.ResponseWriter, r *http.Request) {
	name, ok := cameraName(w, r)
	if !ok || !s.camerasReady(w, r) {
		return
	}
	var src config.Stream
	if !readJSON(w, r, maxCameraBody, &src, "a stream") {
		return
	}
	if err := src.Check(); err != nil {
		httperr.Write(w, http.StatusBadRequest, protocol.CodeBadField, err.Error())
		return
	}
	s.camerasMu.Lock()
	defer s.camerasMu.Unlock()
	status := http.StatusCreated
	switch origin, exists := s.cameras.Origin(name); {
	case exists && origin == originConfig:
		httperr.Write(w, http.StatusConflict, "config_stream", "stream "+name+" is declared in the configuration file; change it there")
		return
	case exists:
		status = http.StatusOK
		_ = s.cameras.Remove(name)
	}
	if err := s.cameras.Add(name, src, originAPI); err != nil {
		httperr.Write(w, http.StatusConflict, "conflict", err.Error())
		return
	}
	if !s.saveCameras(w) {
		return
	}
	in, _ := s.cameras.Get(name)
	writeJSON(w, status, in)
}

// deleteCamera stops and forgets a camera stream added through the API.
func (s *Server) deleteCamera(w http.ResponseWriter, r *http.Request) {
	name, ok := cameraName(w, r)
	if !ok || !s.camerasReady(w, r) {
		return
	}
	s.camerasMu.Lock()
	defer s.camerasMu.Unlock()
	switch origin, exists := s.cameras.Origin(name); {
	case !exists:
		httperr.Write(w, http.StatusNotFound, "not_found", "no camera stream "+name)
		return
	case origin == originConfig:
		httperr.Write(w, http.StatusConflict, "config_stream", "stream "+name+" is declared in the configuration file; remove it there (the API deletes only streams it added)")
		return
	}
	_ = s.cameras.Remove(name)
	if s.saveCameras(w) {
		w.WriteHeader(http.StatusNoContent)
	}
}

// saveCameras writes the API's streams to the data directory (called
// with camerasMu held); on failure it answers 500.
func (s *Server) saveCameras(w http.ResponseWriter) bool {
	if err := camera.SaveFile(s.camerasFile(), s.cameras.Sources(originAPI)); err != nil {
		s.log.Error("saving the camera streams", "err", err)
		httperr.Write(w, http.StatusInternalServerError, "internal", "the change is live but could not be saved: "+err.Error())
		return false
	}
	return true
}
