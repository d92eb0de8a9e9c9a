package server

import (
	"encoding/json"
	"net/http"
)

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.hub.ServeWS)
	mux.Handle("/api/session", s.hub)
	mux.Handle("/api/session/", s.hub)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /metrics", s.publicMetrics)                  // ops.go
	mux.HandleFunc("GET /api/streams/{name}", s.publicStreamStatus)  // ops.go
	mux.HandleFunc("GET /api/streams/{name}/events", s.streamEvents) // streamevents.go
	mux.HandleFunc("GET /api/ingest", s.ingestInfo)                  // ingest.go
	s.recordRoutes(mux, true)                                        // record.go: admin tokens
	mux.HandleFunc("GET /api/status", s.publicStatusAPI)             // status.go
	mux.HandleFunc("GET /api/check", s.checkInfo)                    // check.go
	mux.HandleFunc("POST /api/check/media", s.checkProbe)            // check.go
	s.pushRoutes(mux, true)                                          // push.go
	mux.HandleFunc("/whip/", s.serveWHIP)
	mux.HandleFunc("/whep/", s.serveWHIP)
	mux.HandleFunc("/hls/", s.serveHLS) // hls.go
	mux.HandleFunc(showMediaPrefix+"/", s.serveShowWHIP)
	s.mountShows(mux)
	mux.Handle("/", s.app)
	return mux
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	rooms, members := s.rooms.Counts()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"status": "ok", "rooms": rooms, "members": members,
		"sessions": s.hub.Sessions(), "turn": s.turn != nil})
}
