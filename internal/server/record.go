package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/parley/parley/internal/access"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/record"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
	"github.com/parley/parley/pkg/protocol"
)

// Recording (internal/record): streams recorded by API or by config
// (record: always), files under --record-dir. The API is management: on
// the --ops listener, and on the main port to admin tokens only (an open
// server has no token that could tell an operator from anyone else, so
// there it answers 404 pointing at --ops).

// maxRecordBody bounds a POST /api/streams/{name}/record body.
const maxRecordBody = 4 << 10

// startRecording starts the recorder manager and the configured
// recordings; it needs the taps.
func (s *Server) startRecording() error {
	m, err := record.New(record.Config{
		Dir: s.cfg.RecordDir, Open: s.openRecordSource, IsNotLive: func(err error) bool { return errors.Is(err, tap.ErrNotLive) },
		MaxAge: s.cfg.RecordMaxAge.D(), MaxBytes: int64(s.cfg.RecordMaxSize), OnFile: s.recordingDone, Logger: s.log,
		RoomTracks: s.roomTracks, OpenTrack: s.openRoomTrack,
	})
	if err != nil {
		return err
	}
	for name, st := range s.cfg.Streams {
		if !st.RecordAlways() {
			continue
		}
		if err := m.Start(name, recordOptions(st), true); err != nil {
			m.Close()
			return fmt.Errorf("streams.%s: record: %w", name, err)
		}
	}
	s.recorder = m
	s.metrics.GaugeFunc("parley_recordings_active", "Streams being recorded (recording or waiting for a publisher).",
		func() float64 { return float64(len(m.Recordings())) })
	return nil
}

func (s *Server) stopRecording() {
	if s.recorder != nil {
		s.recorder.Close()
	}
}

// recordOptions are a configured stream's recording options.
func recordOptions(st config.Stream) record.Options {
	format, mode, interval, segment, size := st.RecordSettings()
	return record.Options{Format: format, Mode: mode, KeyframeInterval: interval, SegmentDuration: segment, SegmentSize: size}
}

// recordKeyframeInterval is how often a recording asks a publisher that
// sends keyframes only when asked (a browser) for one: segments and files
// start at keyframes, and a file cut by a crash plays up to its last one.
const recordKeyframeInterval = 2 * time.Second

// openRecordSource reads a stream through its tap.
func (s *Server) openRecordSource(ctx context.Context, stream string) (record.Source, error) {
	r, err := s.taps.Open(ctx, sfu.Streams, stream, tap.Options{KeyframeInterval: recordKeyframeInterval})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// roomTracks lists a group call's tracks (sfu.Calls: server-routed
// rooms; a peer-to-peer room has no media on the server).
func (s *Server) roomTracks(room string) ([]record.RoomTrack, bool) {
	r, ok := s.sfu.LookupRoom(sfu.Calls, room)
	if !ok {
		return nil, false
	}
	var out []record.RoomTrack
	for _, t := range r.Tracks() {
		out = append(out, record.RoomTrack{ID: t.ID, Participant: t.Publisher, Kind: t.Kind, Codec: t.Codec})
	}
	return out, true
}

// openRoomTrack reads one participant track of a group call.
func (s *Server) openRoomTrack(ctx context.Context, room, track string) (record.Source, error) {
	r, err := s.taps.Open(ctx, sfu.Calls, room, tap.Options{Tracks: []string{track}, KeyframeInterval: recordKeyframeInterval})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// recordingDone sends on_record_done for a finished file.
func (s *Server) recordingDone(f record.File) {
	if s.access != nil {
		s.access.RecordDone(access.Recording{Stream: f.Stream, Room: f.Room, Path: f.Path, Duration: f.Duration, Size: f.Size})
	}
}

// recordRoutes adds the recording API to a mux: the ops listener's
// (public false) or the main port's (public true: admin tokens only).
func (s *Server) recordRoutes(mux *http.ServeMux, public bool) {
	h := func(f http.HandlerFunc, query bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if public && s.auth == nil {
				httperr.Write(w, http.StatusNotFound, "not_found", "the recording API is served on the operations listener (--ops) of a server without auth")
				return
			}
			if !s.requireAdminToken(w, r, "recordings", query) {
				return
			}
			if s.recorder == nil {
				httperr.Write(w, http.StatusServiceUnavailable, "media-off", "this server runs without media (--media-udp off): nothing to record")
				return
			}
			f(w, r)
		}
	}
	if !public { // the main port serves every page already
		mux.Handle("GET /recordings", s.app) // the page; its assets are the status page's
	}
	mux.HandleFunc("POST /api/streams/{name}/record", h(s.startStreamRecording, false))
	mux.HandleFunc("DELETE /api/streams/{name}/record", h(s.stopStreamRecording, false))
	mux.HandleFunc("POST /api/rooms/{name}/record", h(s.startRoomRecording, false))
	mux.HandleFunc("DELETE /api/rooms/{name}/record", h(s.stopRoomRecording, false))
	mux.HandleFunc("GET /api/recordings", h(s.listRecordings, false))
	mux.HandleFunc("GET /api/recordings/{id...}", h(s.downloadRecording, true))
	mux.HandleFunc("DELETE /api/recordings/{id...}", h(s.deleteRecording, false))
}

// recordRequest is the optional body of POST /api/streams/{name}/record.
type recordRequest struct {
	Format           string          `json:"format"`            // mp4, webm, "" (WebM for VP8, else MP4)
	Mode             string          `json:"mode"`              // all, keyframes
	KeyframeInterval config.Duration `json:"keyframe_interval"` // keyframes mode: "60s"
	Segment          config.Duration `json:"segment"`           // a new file every "10m"
	SegmentSize      config.ByteSize `json:"segment_size"`      // or past "500M"
}

func (s *Server) startStreamRecording(w http.ResponseWriter, r *http.Request) {
	name, ok := cameraName(w, r)
	if !ok {
		return
	}
	var req recordRequest
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		if !readJSON(w, r, maxRecordBody, &req, "recording options") {
			return
		}
	}
	opts := record.Options{Format: req.Format, Mode: req.Mode, KeyframeInterval: req.KeyframeInterval.D(),
		SegmentDuration: req.Segment.D(), SegmentSize: int64(req.SegmentSize)}
	if err := opts.Check(); err != nil {
		httperr.Write(w, http.StatusBadRequest, protocol.CodeBadField, err.Error())
		return
	}
	switch err := s.recorder.Start(name, opts, false); {
	case errors.Is(err, record.ErrRecording):
		httperr.Write(w, http.StatusConflict, "recording", "stream "+name+" is already being recorded (DELETE this URL to stop)")
		return
	case errors.Is(err, tap.ErrNotLive), errors.Is(err, context.DeadlineExceeded):
		httperr.Write(w, http.StatusNotFound, "not_live", "stream "+name+" is not live (nobody publishes it, or no keyframe came): nothing to record")
		return
	case errors.Is(err, record.ErrFormat), errors.Is(err, record.ErrName):
		httperr.Write(w, http.StatusBadRequest, protocol.CodeBadField, err.Error())
		return
	case err != nil:
		httperr.Write(w, http.StatusInternalServerError, "internal", "recording "+name+": "+err.Error())
		return
	}
	st, _ := s.recorder.Status(name)
	writeJSON(w, http.StatusCreated, record.Recording{Stream: name, Status: st})
}

func (s *Server) stopStreamRecording(w http.ResponseWriter, r *http.Request) {
	name, ok := cameraName(w, r)
	if !ok {
		return
	}
	if err := s.recorder.Stop(name); err != nil {
		httperr.Write(w, http.StatusNotFound, "not_recording", "stream "+name+" is not being recorded")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) startRoomRecording(w http.ResponseWriter, r *http.Request) {
	name, ok := cameraName(w, r)
	if !ok {
		return
	}
	switch err := s.recorder.StartRoom(name); {
	case errors.Is(err, record.ErrRecording):
		httperr.Write(w, http.StatusConflict, "recording", "room "+name+" is already being recorded (DELETE this URL to stop)")
		return
	case errors.Is(err, record.ErrName):
		httperr.Write(w, http.StatusBadRequest, protocol.CodeBadField, err.Error())
		return
	case errors.Is(err, record.ErrNoRoom):
		httperr.Write(w, http.StatusNotFound, "no_room", "no server-routed (sfu mode) call "+name+" is running: peer-to-peer rooms carry no media through the server")
		return
	case err != nil:
		httperr.Write(w, http.StatusInternalServerError, "internal", "recording room "+name+": "+err.Error())
		return
	}
	for _, rec := range s.recorder.Recordings() {
		if rec.Room == name {
			writeJSON(w, http.StatusCreated, rec)
			return
		}
	}
	writeJSON(w, http.StatusCreated, record.Recording{Room: name})
}

func (s *Server) stopRoomRecording(w http.ResponseWriter, r *http.Request) {
	name, ok := cameraName(w, r)
	if !ok {
		return
	}
	if err := s.recorder.StopRoom(name); err != nil {
		httperr.Write(w, http.StatusNotFound, "not_recording", "room "+name+" is not being recorded")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// recordingURL is a file's download URL (its ID's segments escaped).
func recordingURL(id string) string {
	parts := strings.Split(id, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/api/recordings/" + strings.Join(parts, "/")
}

func (s *Server) listRecordings(w http.ResponseWriter, _ *http.Request) {
	files, err := s.recorder.Files()
	if err != nil {
		httperr.Write(w, http.StatusInternalServerError, "internal", "listing "+s.cfg.RecordDir+": "+err.Error())
		return
	}
	for i := range files {
		files[i].URL = recordingURL(files[i].ID)
	}
	if files == nil {
		files = []record.File{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"dir": s.cfg.RecordDir, "files": files, "recorders": s.recorder.Recordings()})
}

// downloadRecording serves a file with range requests (players seek).
func (s *Server) downloadRecording(w http.ResponseWriter, r *http.Request) {
	f, err := s.recorder.Lookup(r.PathValue("id"))
	if err != nil {
		httperr.Write(w, http.StatusNotFound, "not_found", "no recording "+r.PathValue("id"))
		return
	}
	file, err := os.Open(f.Path)
	if err != nil {
		httperr.Write(w, http.StatusNotFound, "not_found", "no recording "+f.ID)
		return
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		httperr.Write(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	ctype := "video/" + f.Format
	if f.Format == "json" { // a room recording's manifest
		ctype = "application/json"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", st.Name()))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	var rs io.ReadSeeker = file
	if f.State == record.StateRecording { // growing: serve what is there now
		rs = io.NewSectionReader(file, 0, st.Size())
	}
	http.ServeContent(w, r, st.Name(), st.ModTime(), rs)
}

func (s *Server) deleteRecording(w http.ResponseWriter, r *http.Request) {
	switch err := s.recorder.Delete(r.PathValue("id")); {
	case errors.Is(err, record.ErrNotFound):
		httperr.Write(w, http.StatusNotFound, "not_found", "no recording "+r.PathValue("id"))
	case errors.Is(err, record.ErrBusy):
		httperr.Write(w, http.StatusConflict, "recording", "the file is still being written: stop its recording first")
	case err != nil:
		httperr.Write(w, http.StatusInternalServerError, "internal", err.Error())
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
