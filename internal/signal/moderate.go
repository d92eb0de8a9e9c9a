// Moderation: a member whose token has the admin grant may remove a member
// of its room, mute a member's tracks, or end the room (as LiveKit's and
// Galène's moderators can).
package signal

import (
	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// wireGrants is what joined tells the member it may do.
func wireGrants(g auth.Grants) protocol.Grants {
	return protocol.Grants{Publish: g.Publish, Subscribe: g.Subscribe, Admin: g.Admin}
}

// moderate applies a "moderate" message; s.mu is held.
//
//   - remove: the member gets "removed", then its connection closes;
//   - mute: the member gets one "muted" per track, and in sfu rooms the
//     server stops forwarding those tracks until the member unmutes them
//     (a "media" unmute); in p2p rooms the server can only ask, and the
//     member's client mutes itself;
//   - end: every member, the moderator too, gets "ended", then the
//     connections close and the room is gone.
func (s *session) moderate(m protocol.Message) {
	r := s.member.Room()
	switch {
	case r == nil:
		s.sendError(protocol.CodeNotInRoom, "join a room before moderating it")
		return
	case !s.grants.Admin:
		s.sendError(protocol.CodeForbidden, "moderation needs the admin grant")
		return
	}
	members := s.hub.sessionsIn(r)
	if m.Action == protocol.ActionEnd {
		s.hub.log.Info("room ended by a moderator", "room", r.Name, "moderator", s.member.ID, "members", len(members))
		for _, t := range members {
			t.finish(protocol.Message{Type: protocol.TypeEnded, Room: r.Name, From: s.member.ID,
				Message: "a moderator ended the call"})
		}
		return
	}
	var target *session
	for _, t := range members {
		if t.member.ID == m.ID {
			target = t
		}
	}
	if target == nil {
		s.sendError(protocol.CodeNoSuchPeer, "no member "+m.ID+" in your room")
		return
	}
	switch m.Action {
	case protocol.ActionRemove:
		s.hub.log.Info("member removed by a moderator", "room", r.Name, "member", m.ID, "moderator", s.member.ID)
		target.finish(protocol.Message{Type: protocol.TypeRemoved, Room: r.Name, From: s.member.ID,
			Message: "a moderator removed you from the call"})
	case protocol.ActionMute:
		var muted []protocol.Message
		if s.media != nil {
			muted = s.media.Mute(m.ID, m.Track)
		}
		if len(muted) == 0 { // p2p, or nothing published yet: the client mutes itself
			what := m.Track
			if what == "" {
				what = "audio"
			}
			kind := ""
			if what == "audio" || what == "video" {
				kind = what
			}
			muted = []protocol.Message{{Type: protocol.TypeMuted, Track: what, Kind: kind}}
		}
		for _, mu := range muted {
			mu.From = s.member.ID
			target.send(mu)
		}
	}
}

// finish ends the session with m as its last message (removed, ended):
// like fail, for an end that is no error. The member's media stop at once,
// not when its transport notices (a long-poll client may never poll again).
func (s *session) finish(m protocol.Message) {
	s.once.Do(func() {
		s.reason = m
		close(s.failed)
		s.armAbort()
		go func() { // not inline: we hold the moderator's session lock, and s may be moderating
			s.hub.opts.Rooms.Leave(s.member)
			s.closeMedia()
		}()
	})
}

// sessionsIn lists the sessions whose member is in r. Moderation is rare:
// a walk over the sessions costs less than an index kept up on every join.
func (h *Hub) sessionsIn(r *room.Room) []*session {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*session
	for s := range h.sessions {
		if s.member.Room() == r {
			out = append(out, s)
		}
	}
	return out
}
