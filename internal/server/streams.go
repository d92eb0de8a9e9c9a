package server

import (
	"encoding/json"
	"net/http"

	"github.com/parley/parley/internal/httperr"

	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/protocol"
)

// streamStatus is what GET /api/streams/{name} answers: whether a
// broadcast is live and how many watch it (WHEP and browser viewers alike).
type streamStatus struct {
	Stream  string `json:"stream"`
	Live    bool   `json:"live"`
	Tracks  int    `json:"tracks"`
	Viewers int    `json:"viewers"`
}

func (s *Server) streamStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !protocol.ValidRoom(name) {
		httperr.Write(w, http.StatusBadRequest, protocol.CodeInvalidRoom, "stream names are 1-64 characters of A-Z a-z 0-9 _ . -")
		return
	}
	st := streamStatus{Stream: name}
	if s.sfu != nil {
		if room, ok := s.sfu.LookupRoom(sfu.Streams, name); ok {
			publishers := map[string]bool{}
			for _, t := range room.Tracks() {
				publishers[t.Publisher] = true
				st.Tracks++
			}
			st.Live = st.Tracks > 0
			for _, p := range room.Participants() {
				if !publishers[p.ID()] {
					st.Viewers++
				}
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(st)
}
