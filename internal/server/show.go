package server

import (
	"fmt"
	"net/http"

	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/show"
)

// mountShows builds the light-show registry and mounts its API:
//
//	GET  /api/shows/{name}/ws         control WebSocket (host page or screen)
//	POST /api/shows/{name}/broadcast  external control (mode, flash, text)
//	GET  /api/shows/{name}            state: screens, bands, levels, mode
//
// The pages themselves (/show/{name}, /show/{name}/screen) are served by
// the web app; the audio is the WHIP/WHEP stream "show-{name}".
func (s *Server) mountShows(mux *http.ServeMux) {
	s.shows = show.NewRegistry(show.Options{
		Verify:     s.verifyShow,
		ICEServers: s.showICEServers,
		Origins:    s.origins,
		AudioLive:  s.showAudioLive,
		Logger:     s.log,
	})
	counts := func(pick func(shows, screens, hosts int) int) func() float64 {
		return func() float64 { return float64(pick(s.shows.Counts())) }
	}
	s.metrics.GaugeFunc("parley_shows", "Light shows open.", counts(func(n, _, _ int) int { return n }))
	s.metrics.GaugeFunc("parley_show_screens", "Light-show screens (online or reconnecting).", counts(func(_, n, _ int) int { return n }))
	s.metrics.GaugeFunc("parley_show_hosts", "Light-show host pages.", counts(func(_, _, n int) int { return n }))
	mux.HandleFunc("GET /api/shows/{name}/ws", s.shows.ServeWS)
	mux.HandleFunc("POST /api/shows/{name}/broadcast", s.shows.ServeBroadcast)
	mux.HandleFunc("GET /api/shows/{name}", s.shows.ServeState)
}

// verifyShow checks a show token when auth is on. The token's room must
// cover the show's stream name ("show-<name>", so "show-*" covers all
// shows). Hosts and the broadcast endpoint need publish or admin, screens
// subscribe (or admin). The token comes as "Authorization: Bearer" or,
// for browser WebSockets, as the "token" query parameter.
func (s *Server) verifyShow(r *http.Request, name string, role show.Role) error {
	if s.auth == nil {
		return nil
	}
	c, err := s.requestClaims(r, true)
	if err != nil {
		return err
	}
	stream := show.StreamName(name)
	if !c.AllowsRoom(stream) {
		return fmt.Errorf("%w: the token does not grant %s", show.ErrForbidden, stream)
	}
	g := c.Grants
	switch role {
	case show.RoleScreen:
		if !g.Subscribe && !g.Admin {
			return fmt.Errorf("%w: a screen needs the subscribe grant", show.ErrForbidden)
		}
	default:
		if !g.Publish && !g.Admin {
			return fmt.Errorf("%w: controlling a show needs the publish or admin grant", show.ErrForbidden)
		}
	}
	return nil
}

// showICEServers hands show pages STUN/TURN for their WHIP/WHEP sessions.
func (s *Server) showICEServers(r *http.Request) []show.ICEServer {
	var out []show.ICEServer
	for _, is := range s.requestICEServers(r, "show-") {
		out = append(out, show.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return out
}

// showAudioLive says whether a show's audio stream is published.
func (s *Server) showAudioLive(name string) bool {
	if s.sfu == nil {
		return false
	}
	r, ok := s.sfu.LookupRoom(sfu.Shows, show.StreamName(name))
	return ok && len(r.Tracks()) > 0
}
