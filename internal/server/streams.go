package server

import (
	"net/http"
	"time"

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
	// Source is set when the stream comes from an IP camera Parley pulls:
	// the pull's state, so the watch page can say "camera offline since
	// 12:03 — connection refused" rather than show a black screen.
	Source *streamSource `json:"source,omitempty"`
}

// streamSource is a pulled stream's state (no URL: viewers see it).
type streamSource struct {
	Kind     string    `json:"kind"` // "camera"
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
	Error    string    `json:"error,omitempty"`
	OnDemand bool      `json:"on_demand"`
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
	if s.cameras != nil {
		if in, ok := s.cameras.Get(name); ok {
			st.Source = &streamSource{Kind: "camera", State: string(in.Status.State), Since: in.Status.Since,
				Error: in.Status.Error, OnDemand: in.OnDemand}
		}
	}
	writeJSON(w, http.StatusOK, st)
}
