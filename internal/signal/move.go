package signal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// Members that move between the nodes of a cluster (issue #15).
//
// A node that dies, or that its client can no longer reach, takes its
// members' sessions with it; their clients go to another node and present
// the resume token they hold. That node did not issue it, so on a cluster
// tokens are sealed: "m" and, in base64url, the member's ID (8 bytes),
// its grants (1 byte), 64 random bits and a MAC (HMAC-SHA-256, 16 bytes)
// over those, the room and the node that issued it, under a key every
// node derives from the shared TURN secret (Options.MoveKey). A node that
// does not know a token checks it against the room and the node the
// cluster says the member is in (Options.Adopt); if it holds, the new
// connection takes the member over here: same ID, same room, and the
// room's members are told nothing, so their tiles and, in peer-to-peer
// rooms, their media connections stay. The old node, if it is up, ends its
// session quietly. What was in flight to or from the member through the
// old node is lost, and the client is told so (resumed with "moved"): it
// sends nothing again, and restarts what needs it (its link to the SFU,
// connections that failed).
//
// A token moves its member once: after the move the member is this node's,
// and tokens sealed by the old node no longer match it.

const (
	sealedPrefix = "m"
	idBytes      = 8
	nonceBytes   = 8
	macBytes     = 16
	sealedBytes  = idBytes + 1 + nonceBytes + macBytes
)

var errNotMovable = errors.New("no member of another node has that token")

// MoveKey derives the key that seals resume tokens from a secret that
// every node of a cluster shares.
func MoveKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("parley resume tokens v1"))
	return m.Sum(nil)
}

// sealToken is a sealed resume token for s's member, issued by this node;
// "" when the member's ID is not one this node makes up.
func (h *Hub) sealToken(s *session) string {
	r := s.member.Room()
	id, err := hex.DecodeString(s.member.ID)
	if r == nil || err != nil || len(id) != idBytes {
		return ""
	}
	b := make([]byte, 0, sealedBytes)
	b = append(b, id...)
	b = append(b, grantBits(s.grants))
	var nonce [nonceBytes]byte
	_, _ = rand.Read(nonce[:])
	b = append(b, nonce[:]...)
	b = append(b, h.moveMAC(h.opts.Node, r.Name, b)...)
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// moveMAC seals body (ID, grants, nonce) to a room and the issuing node.
func (h *Hub) moveMAC(node, roomName string, body []byte) []byte {
	m := hmac.New(sha256.New, h.opts.MoveKey)
	m.Write([]byte(node))
	m.Write([]byte{0})
	m.Write([]byte(roomName))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)[:macBytes]
}

// openToken parses a sealed token: the member's ID, its grants, and the
// check of the MAC against the room and node the member is in.
func (h *Hub) openToken(token string) (id string, g auth.Grants, check func(roomName, node string) bool, ok bool) {
	if len(h.opts.MoveKey) == 0 || len(token) < 2 || token[:1] != sealedPrefix {
		return "", g, nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(token[1:])
	if err != nil || len(b) != sealedBytes {
		return "", g, nil, false
	}
	body, mac := b[:sealedBytes-macBytes], b[sealedBytes-macBytes:]
	check = func(roomName, node string) bool { return hmac.Equal(mac, h.moveMAC(node, roomName, body)) }
	return hex.EncodeToString(b[:idBytes]), bitGrants(b[idBytes]), check, true
}

func grantBits(g auth.Grants) byte {
	var b byte
	if g.Publish {
		b |= 1
	}
	if g.Subscribe {
		b |= 2
	}
	if g.Admin {
		b |= 4
	}
	return b
}

func bitGrants(b byte) auth.Grants {
	return auth.Grants{Publish: b&1 != 0, Subscribe: b&2 != 0, Admin: b&4 != 0}
}

// moveHere makes s, a new connection's session in no room, the member of
// another node that token names, and queues the message for its client
// (resumed, with "moved") before anything else. Both sides count the
// messages of the member from here (replay.go): the client counts this
// resumed, unlike one of a resume on the same node. s.mu is held.
func (s *session) moveHere(token string) error {
	h := s.hub
	if h.opts.Adopt == nil || s.member.Room() != nil {
		return errNotMovable
	}
	id, grants, check, ok := h.openToken(token)
	if !ok {
		return errNotMovable
	}
	m := s.member
	r, err := h.opts.Adopt(id, m, func(old *room.Member, node string) bool {
		cur := old.Room()
		if cur == nil || !check(cur.Name, node) {
			return false
		}
		// Told to the other nodes by the move's join: as the member was.
		m.ID, m.Name, m.Info = old.ID, old.Name, old.Info
		return true
	})
	if err != nil {
		m.ID = room.NewID() // in case valid took it before Adopt failed
		return errNotMovable
	}
	s.grants = grants
	h.moves.Inc()
	s.joined()
	var peers []protocol.Peer
	for _, p := range r.Members() {
		if p != m {
			peers = append(peers, infoOf(p).peer)
		}
	}
	me := infoOf(m).peer
	msg := protocol.Message{Type: protocol.TypeResumed, Moved: true, Room: r.Name, ID: m.ID, Name: m.Name,
		Mode: string(r.Mode), Peers: peers, ICEServers: h.opts.ICEServers(s.host, m.ID), Identity: me.Identity,
		Verified: me.Verified, Host: me.Host, Resume: h.issueToken(s), Nodes: h.nodes(), MediaNode: s.mediaNode(r)}
	g := wireGrants(grants)
	msg.Grants = &g
	s.push(mustJSON(msg))
	s.startMedia(r)
	return nil
}

// movePoll opens an HTTP session on the member of another node that token
// names (moveHere); false when it names none.
func (h *Hub) movePoll(w http.ResponseWriter, r *http.Request, token string) bool {
	if len(h.opts.MoveKey) == 0 {
		return false
	}
	if _, _, _, ok := h.openToken(token); !ok {
		return false
	}
	p := h.newPoll(w, r)
	if p == nil {
		return true // refused, and answered
	}
	p.mu.Lock()
	err := p.moveHere(token)
	p.mu.Unlock()
	if err != nil {
		h.finish(p.session)
		return false
	}
	h.addPoll(w, p)
	return true
}

// Moved ends, without a word to its room, the session of a member whose
// client resumed at another node of the cluster (the cluster has already
// put the other node's member in its place).
func (h *Hub) Moved(m *room.Member) {
	h.mu.Lock()
	var found *session
	for s := range h.sessions {
		if s.member == m {
			found = s
			break
		}
	}
	if found != nil {
		h.revokeLocked(found)
	}
	h.mu.Unlock()
	if found == nil {
		return
	}
	h.log.Debug("member resumed at another node", "member", m.ID)
	found.fail(protocol.CodeNoSession, "this member was resumed at another node")
	h.dropIfDetached(found)
}
