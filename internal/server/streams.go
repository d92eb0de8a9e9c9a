package server

import (
	"net/http"
	"time"

	"github.com/parley/parley/internal/hls"
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
	// Source is set when the stream comes from an IP camera Parley pulls
	// or an RTMP, RTSP or SRT publisher: for a camera, the pull's state,
	// so the watch page can say "camera offline since 12:03 — connection
	// refused" rather than show a black screen; for a live source, its
	// tracks and what viewers should be told (video no browser decodes,
	// B-frames, no sound).
	Source *streamSource `json:"source,omitempty"`
	// HLS is the stream's LL-HLS (/hls/<stream>/index.m3u8): its state,
	// viewers, and in words why it cannot be served or what it leaves out.
	HLS *hls.Status `json:"hls,omitempty"`
}

// streamSource is a stream's non-WebRTC source (no URL: viewers see it).
type streamSource struct {
	Kind       string    `json:"kind"` // "camera", "rtmp", "rtsp", "srt"
	State      string    `json:"state"`
	Since      time.Time `json:"since"`
	Error      string    `json:"error,omitempty"`
	OnDemand   bool      `json:"on_demand"`
	Tracks     []string  `json:"tracks,omitempty"`      // e.g. "H.264", "AAC→Opus"
	Notes      []string  `json:"notes,omitempty"`       // problems viewers should know of, in words
	AudioError string    `json:"audio_error,omitempty"` // why there is no sound (the transcoder's state)
}

func (s *Server) streamStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !protocol.ValidRoom(name) {
		httperr.Write(w, http.StatusBadRequest, protocol.CodeInvalidRoom, "stream names are 1-64 characters of A-Z a-z 0-9 _ . -")
		return
	}
	writeJSON(w, http.StatusOK, s.currentStreamStatus(name))
}

// currentStreamStatus is the stream's status now (the GET and the events).
func (s *Server) currentStreamStatus(name string) streamStatus {
	st := streamStatus{Stream: name}
	if s.sfu != nil {
		var tracks []sfu.TrackInfo
		if room, ok := s.sfu.LookupRoom(sfu.Streams, name); ok {
			tracks = room.Tracks()
			publishers := map[string]bool{}
			for _, t := range tracks {
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
		st.HLS = s.hlsStatus(name, tracks)
		// Published on another node: viewers here get it through the
		// cluster's relay, which their first request starts.
		st.Live = st.Live || s.liveElsewhere(name)
	}
	if si, ok := s.sources.Source(name); ok {
		st.Source = &streamSource{Kind: si.Proto, State: "live", Since: si.Since, Tracks: si.Tracks, Notes: si.Notes, AudioError: si.AudioError}
	}
	if s.cameras != nil {
		if in, ok := s.cameras.Get(name); ok {
			src := &streamSource{Kind: "camera", State: string(in.Status.State), Since: in.Status.Since,
				Error: in.Status.Error, OnDemand: in.OnDemand}
			if st.Source != nil && st.Source.Kind == "camera" { // live: what the pull publishes
				src.Tracks, src.Notes, src.AudioError = st.Source.Tracks, st.Source.Notes, st.Source.AudioError
			}
			st.Source = src
		}
	}
	return st
}
