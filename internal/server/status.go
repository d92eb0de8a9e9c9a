package server

import (
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parley/parley/internal/cluster"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/push"
	"github.com/parley/parley/internal/record"
	"github.com/parley/parley/internal/sfu"
)

// The operators' status: GET /api/status (and the /status page that
// shows it) on the --ops listener, and to admin tokens on the main port.
// It is the modern version of nginx-rtmp's /stat: every stream with its
// source, codecs, bitrate and viewers per protocol, with recordings and
// pushes in progress.

// sessionCounts counts the sessions the authorizer admitted and that have
// not ended, per stream, protocol and action: the status's viewers per
// protocol (RTSP, RTMP, SRT, HLS players) come from here.
type sessionCounts struct {
	mu sync.Mutex
	n  map[sessionKey]int
}

type sessionKey struct {
	stream, proto string
	publish       bool
}

// add counts one session; done uncounts it (once).
func (c *sessionCounts) add(k sessionKey) (done func()) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[sessionKey]int{}
	}
	c.n[k]++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			if c.n[k]--; c.n[k] <= 0 {
				delete(c.n, k)
			}
			c.mu.Unlock()
		})
	}
}

// reads returns the readers of each stream by protocol.
func (c *sessionCounts) reads() map[string]map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]map[string]int{}
	for k, n := range c.n {
		if k.publish {
			continue
		}
		if out[k.stream] == nil {
			out[k.stream] = map[string]int{}
		}
		out[k.stream][k.proto] += n
	}
	return out
}

// countSession wraps an authorizer's end so the session is counted while
// it lasts.
func (s *Server) countSession(r ingest.Request, end func()) func() {
	done := s.counts.add(sessionKey{stream: r.Stream, proto: r.Proto, publish: r.Action == ingest.Publish})
	return func() {
		done()
		end()
	}
}

// opsStatus is GET /api/status.
type opsStatus struct {
	Time       time.Time      `json:"time"`
	Uptime     float64        `json:"uptime_seconds"`
	Goroutines int            `json:"goroutines"`
	Rooms      int            `json:"rooms"`
	Members    int            `json:"members"`
	Sessions   int            `json:"sessions"`
	TURN       int            `json:"turn_allocations"`
	Streams    []streamReport `json:"streams"`
	// Recordings are the streams and rooms being recorded (record.go).
	Recordings []record.Recording `json:"recordings"`
	// Cluster is the node's view of its cluster (cluster.go), absent
	// without --cluster.
	Cluster *cluster.Status `json:"cluster,omitempty"`
}

// streamReport is one stream in the status.
type streamReport struct {
	Name    string         `json:"name"`
	Live    bool           `json:"live"`
	Source  string         `json:"source,omitempty"` // webrtc, rtmp, rtsp, srt, camera
	State   string         `json:"state,omitempty"`  // a camera's pull state
	Since   *time.Time     `json:"since,omitempty"`
	Error   string         `json:"error,omitempty"`
	Tracks  []trackReport  `json:"tracks"`
	Bitrate uint64         `json:"bitrate"` // bit/s, all tracks
	Viewers map[string]int `json:"viewers"` // by protocol: webrtc, hls, rtsp, rtmp, srt
	Notes   []string       `json:"notes,omitempty"`
	// Recordings is the stream's recorder (record.go), when it has one.
	Recordings []record.Status `json:"recordings,omitempty"`
	Pushes     []push.Status   `json:"pushes,omitempty"` // restreaming destinations, URLs redacted
}

type trackReport struct {
	Kind    string   `json:"kind"`
	Codec   string   `json:"codec"`
	Bitrate uint64   `json:"bitrate"`
	Layers  []string `json:"layers,omitempty"`
}

// report gathers the status.
func (s *Server) report() opsStatus {
	rooms, members := s.rooms.Counts()
	st := opsStatus{Time: time.Now().UTC(), Uptime: time.Since(s.started).Seconds(), Goroutines: runtime.NumGoroutine(),
		Rooms: rooms, Members: members, Sessions: s.hub.Sessions(), Streams: []streamReport{}, Cluster: s.clusterStatus()}
	if s.turn != nil {
		st.TURN = s.turn.Stats().Allocations
	}
	reads := s.counts.reads()
	byName := map[string]*streamReport{}
	get := func(name string) *streamReport {
		if r := byName[name]; r != nil {
			return r
		}
		r := &streamReport{Name: name, Tracks: []trackReport{}, Viewers: map[string]int{"webrtc": 0}}
		for proto, n := range reads[name] {
			if proto != "whep" { // WebRTC viewers are counted in the room (browsers too)
				r.Viewers[proto] = n
			}
		}
		byName[name] = r
		return r
	}
	if s.sfu != nil {
		for _, room := range s.sfu.Rooms(sfu.Streams) {
			tracks := room.Tracks()
			if len(tracks) == 0 && len(room.Participants()) == 0 {
				continue
			}
			r := get(room.Name())
			publishers := map[string]bool{}
			for _, t := range tracks {
				publishers[t.Publisher] = true
				r.Tracks = append(r.Tracks, trackReport{Kind: t.Kind, Codec: strings.TrimPrefix(strings.TrimPrefix(t.Codec, "video/"), "audio/"),
					Bitrate: t.Bitrate, Layers: t.Layers})
				r.Bitrate += t.Bitrate
			}
			r.Live = len(tracks) > 0
			if r.Live {
				r.Source = "webrtc"
			}
			for _, p := range room.Participants() {
				if !publishers[p.ID()] {
					r.Viewers["webrtc"]++
				}
			}
			if si, ok := s.sources.Source(room.Name()); ok {
				since := si.Since
				r.Source, r.Since, r.Notes = si.Proto, &since, si.Notes
			}
		}
	}
	if s.cameras != nil {
		for _, in := range s.cameras.List() {
			r := get(in.Name)
			since := in.Status.Since
			r.Source, r.State, r.Since, r.Error = "camera", string(in.Status.State), &since, in.Status.Error
		}
	}
	st.Recordings = []record.Recording{}
	if s.recorder != nil {
		st.Recordings = s.recorder.Recordings()
		for _, rec := range st.Recordings {
			if rec.Stream != "" {
				r := get(rec.Stream)
				r.Recordings = append(r.Recordings, rec.Status)
			}
		}
	}
	for _, p := range s.Pushes() {
		r := get(p.Stream)
		r.Pushes = append(r.Pushes, p)
	}
	for _, r := range byName {
		st.Streams = append(st.Streams, *r)
	}
	slices.SortFunc(st.Streams, func(a, b streamReport) int { return strings.Compare(a.Name, b.Name) })
	return st
}

// opsStatusAPI is GET /api/status on the ops listener (admin tokens when
// auth is on, as the rest of the management API).
func (s *Server) opsStatusAPI(w http.ResponseWriter, r *http.Request) {
	if s.requireAdmin(w, r, "the server's status") {
		writeJSON(w, http.StatusOK, s.report())
	}
}

// publicStatusAPI is GET /api/status on the main port: admin tokens only.
func (s *Server) publicStatusAPI(w http.ResponseWriter, r *http.Request) {
	if s.auth == nil {
		httperr.Write(w, http.StatusNotFound, "not_found", "the status is served on the operations listener (--ops), not on this port of an open server")
		return
	}
	s.opsStatusAPI(w, r)
}
