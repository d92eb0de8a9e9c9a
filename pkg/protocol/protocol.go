// Package protocol defines Parley's signaling messages: the JSON objects
// that travel over /ws and the HTTP long-poll transport. The server and the
// Go client share these types; docs/protocol.md describes them for others.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Message types, client to server.
const (
	TypeJoin   = "join"
	TypeSignal = "signal"
	TypeLeave  = "leave"
	TypePing   = "ping"
	// TypeMedia carries, in sfu rooms, the member's SDP, candidates and
	// subscription preferences to the server, and the server's back.
	TypeMedia = "media"
	// TypeModerate is a moderator's command (needs the admin grant):
	// Action is one of the Action* constants, ID the member it concerns,
	// Track (mute) a track ID or "audio"/"video".
	TypeModerate = "moderate"
	// TypeResume, the first message of a new connection, takes over the
	// member a dropped connection left behind: "resume" holds the token
	// from joined (or the last resumed). See docs/protocol.md.
	TypeResume = "resume"
)

// Moderation actions.
const (
	ActionRemove = "remove" // take member ID out of the room
	ActionMute   = "mute"   // mute member ID's track(s)
	ActionEnd    = "end"    // end the room for everyone
)

// Message types, server to client.
const (
	TypeJoined     = "joined"
	TypePeerJoined = "peer-joined"
	TypePeerLeft   = "peer-left"
	TypeFull       = "full"
	TypeLeft       = "left"
	TypeError      = "error"
	TypePong       = "pong"
	TypeTracks     = "tracks"  // sfu rooms: the published tracks, in "data"
	TypeSpeaker    = "speaker" // sfu rooms: the active speaker's "id"
	// TypeICEServers carries fresh "iceServers" (TURN credentials) to a
	// member before the ones it holds expire.
	TypeICEServers = "ice-servers"
	// TypeMediaClosed: in sfu rooms, the server closed the member's media
	// connection (ICE or DTLS failed); it takes an offer from a new one.
	TypeMediaClosed = "media-closed"
	// Moderation, to the members affected: "removed" and "ended" come
	// last, before the server closes the connection; "muted" names the
	// track ("track", "kind") a moderator muted.
	TypeRemoved = "removed"
	TypeEnded   = "ended"
	TypeMuted   = "muted"
	// TypeResumed answers a resume: the same "id" in the same "room", and
	// a new "resume" token (each token works once). Then come, in order,
	// the messages queued for the member while it was away.
	TypeResumed = "resumed"
	// TypeServerShutdown comes before the server closes every connection
	// on a graceful shutdown (SIGTERM): clients reconnect after about
	// "retryMs" (each with its own jitter) instead of waiting out a
	// backoff; a restarted server knows no resume token, so they join
	// afresh. An "error" with code shutting-down follows, then the close.
	TypeServerShutdown = "server-shutdown"
)

// Error codes: stable strings clients can switch on.
const (
	CodeBadJSON       = "bad-json"
	CodeUnknownType   = "unknown-type"
	CodeMissingField  = "missing-field"
	CodeBadField      = "bad-field"
	CodeInvalidRoom   = "invalid-room"
	CodeNotInRoom     = "not-in-room"
	CodeNoSuchPeer    = "no-such-peer"
	CodeAlreadyJoined = "already-joined"
	CodeTooLarge      = "too-large"
	CodeRateLimited   = "rate-limited"
	CodeSlowConsumer  = "slow-consumer"
	CodeUnauthorized  = "unauthorized"
	CodeForbidden     = "forbidden"
	CodeServerFull    = "server-full"
	CodeShuttingDown  = "shutting-down"
	CodeNoSession     = "no-session"
	CodeNotSFU        = "not-sfu"
	// Per-client limits (issue #10): too many connections from one client
	// address, too many new rooms from it in the last minute, no join in
	// time after connecting.
	CodeTooManyConnections = "too-many-connections"
	CodeTooManyRooms       = "too-many-rooms"
	CodeJoinTimeout        = "join-timeout"
	// CodeResumeFailed: the resume token is unknown, used already or
	// expired (the member left when its grace ran out); join afresh.
	CodeResumeFailed = "resume-failed"
)

// Message is any signaling message. Fields unused by a type are omitted.
type Message struct {
	Type       string          `json:"type"`
	Room       string          `json:"room,omitempty"`
	Name       string          `json:"name,omitempty"`
	Token      string          `json:"token,omitempty"`
	Mode       string          `json:"mode,omitempty"`
	ID         string          `json:"id,omitempty"`
	To         string          `json:"to,omitempty"`
	From       string          `json:"from,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	Peers      []Peer          `json:"peers,omitempty"`
	ICEServers []ICEServer     `json:"iceServers,omitempty"`
	Code       string          `json:"code,omitempty"`
	Message    string          `json:"message,omitempty"`
	Action     string          `json:"action,omitempty"` // moderate
	Track      string          `json:"track,omitempty"`  // moderate (mute), muted
	Kind       string          `json:"kind,omitempty"`   // muted: "audio" or "video"
	Grants     *Grants         `json:"grants,omitempty"` // joined
	// In peer-joined (see Peer); in join, Host asks to host the room on an
	// open server.
	Identity string `json:"identity,omitempty"`
	Verified bool   `json:"verified,omitempty"`
	Host     bool   `json:"host,omitempty"`
	// Resume is the resume token: in resume, the one to present; in
	// resumed, the next one.
	Resume string `json:"resume,omitempty"`
	// RetryMs, in server-shutdown, is when to try to reconnect.
	RetryMs int `json:"retryMs,omitempty"`
	// URL, in server-shutdown from a node of a cluster that is draining,
	// is the base URL of another node to reconnect to (join afresh there:
	// no node but the old one knows the resume token).
	URL string `json:"url,omitempty"`
	// Nodes and MediaNode as in Joined (Nodes in resumed too).
	Nodes     []string `json:"nodes,omitempty"`
	MediaNode string   `json:"mediaNode,omitempty"`
	// Got acknowledges messages (see docs/protocol.md, "Nothing lost"):
	// in resume and ping, how many the client has received from the
	// server; in resumed and pong, how many the server has received from
	// the client. Absent in a resume: the server replays nothing.
	Got *int64 `json:"got,omitempty"`
	// Moved, in resumed, says the member moved here from another node of
	// a cluster: the message then carries what joined does (peers, mode,
	// iceServers, grants, mediaNode), and has no "got": what was in flight
	// through the old node is lost.
	Moved bool `json:"moved,omitempty"`
}

// Joined is the server's answer to a successful join. Peers is always
// present, empty when the room was empty.
type Joined struct {
	Type       string      `json:"type"`
	Room       string      `json:"room"`
	ID         string      `json:"id"`
	Name       string      `json:"name"`
	Mode       string      `json:"mode"`
	Peers      []Peer      `json:"peers"`
	ICEServers []ICEServer `json:"iceServers"`
	Identity   string      `json:"identity,omitempty"` // as in Peer, about you
	Verified   bool        `json:"verified,omitempty"`
	Host       bool        `json:"host,omitempty"`
	Grants     Grants      `json:"grants"`
	// Resume is the token a new connection presents (message resume) to
	// take this member over after the connection drops; empty when the
	// server keeps no member for resuming.
	Resume string `json:"resume,omitempty"`
	// Nodes, from a node of a cluster, are the base URLs of the cluster's
	// other nodes, least loaded first: where to reconnect (joining afresh)
	// when this node cannot be reached. Absent on a server alone.
	Nodes []string `json:"nodes,omitempty"`
	// MediaNode, in a group (sfu) room on a cluster, is the base URL of
	// the node placement chose for the room's media (docs/cluster.md,
	// "Placement"); absent when it is this node or on a server alone.
	MediaNode string `json:"mediaNode,omitempty"`
}

// Grants tell a member what it may do in its room: publish media and
// data, receive them, moderate (the token's grants; on an open server
// publish and subscribe).
type Grants struct {
	Publish   bool `json:"publish"`
	Subscribe bool `json:"subscribe"`
	Admin     bool `json:"admin"`
}

// Peer is another member of the room. Identity and Verified are set when
// the member joined with a token: Identity is the token's subject, which
// the server has verified (Name is the token's name claim when it has
// one, else the name the member chose). Host says the server holds the
// member to be a host of the room: with tokens, one whose token grants
// publish or admin; on an open server, the first member present that
// asked for it (join with "host": true).
type Peer struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Identity string `json:"identity,omitempty"`
	Verified bool   `json:"verified,omitempty"`
	Host     bool   `json:"host,omitempty"`
}

// ICEServer is one entry of RTCConfiguration.iceServers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Limits on fields, checked by Decode.
const (
	MaxNameLen  = 64
	MaxIDLen    = 64
	MaxTokenLen = 4096
)

// ValidRoom reports whether s is a valid room name: 1-64 of [A-Za-z0-9_.-].
// (A loop, not a regexp: every HLS request checks its stream's name.)
func ValidRoom(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// Error is a decoding or protocol error with a wire code.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

func errorf(code, f string, a ...any) *Error { return &Error{Code: code, Msg: fmt.Sprintf(f, a...)} }

// Decode parses one client message and checks its shape. The error, when
// not nil, is an *Error whose code belongs in the reply.
func Decode(b []byte) (Message, error) {
	var m Message
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return m, errorf(CodeBadJSON, "a message is one JSON object")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return m, errorf(CodeBadField, "field %q has the wrong type", te.Field)
		}
		return m, errorf(CodeBadJSON, "malformed JSON: %v", err)
	}
	switch m.Type {
	case "":
		return m, errorf(CodeMissingField, "missing \"type\"")
	case TypeJoin:
		if m.Room == "" {
			return m, errorf(CodeMissingField, "join needs \"room\"")
		}
		if !ValidRoom(m.Room) {
			return m, errorf(CodeInvalidRoom, "room names are 1-64 characters of A-Z a-z 0-9 _ . -")
		}
		if len(m.Name) > MaxNameLen {
			return m, errorf(CodeBadField, "name is longer than %d bytes", MaxNameLen)
		}
		if len(m.Token) > MaxTokenLen {
			return m, errorf(CodeBadField, "token is longer than %d bytes", MaxTokenLen)
		}
		if m.Mode != "" && m.Mode != "p2p" && m.Mode != "sfu" {
			return m, errorf(CodeBadField, "mode is p2p or sfu")
		}
	case TypeSignal:
		if m.To == "" {
			return m, errorf(CodeMissingField, "signal needs \"to\"")
		}
		if len(m.To) > MaxIDLen {
			return m, errorf(CodeBadField, "\"to\" is longer than %d bytes", MaxIDLen)
		}
		if len(m.Data) == 0 || string(m.Data) == "null" {
			return m, errorf(CodeMissingField, "signal needs \"data\"")
		}
	case TypeMedia:
		if len(m.Data) == 0 || m.Data[0] != '{' {
			return m, errorf(CodeMissingField, "media needs \"data\", an object")
		}
	case TypeModerate:
		switch m.Action {
		case ActionRemove, ActionMute:
			if m.ID == "" {
				return m, errorf(CodeMissingField, "moderate %s needs \"id\"", m.Action)
			}
		case ActionEnd:
		case "":
			return m, errorf(CodeMissingField, "moderate needs \"action\": remove, mute or end")
		default:
			return m, errorf(CodeBadField, "action is remove, mute or end")
		}
		if len(m.ID) > MaxIDLen || len(m.Track) > MaxIDLen*2 {
			return m, errorf(CodeBadField, "\"id\" or \"track\" is too long")
		}
	case TypeResume:
		if m.Resume == "" {
			return m, errorf(CodeMissingField, "resume needs \"resume\", the token")
		}
		if len(m.Resume) > MaxIDLen {
			return m, errorf(CodeBadField, "\"resume\" is longer than %d bytes", MaxIDLen)
		}
	case TypeLeave, TypePing:
	default:
		if len(m.Type) > 32 {
			m.Type = m.Type[:32]
		}
		return m, errorf(CodeUnknownType, "unknown message type %q", m.Type)
	}
	return m, nil
}

const signalPrefix = `{"type":"signal","to":"`

// DecodeSignal is the fast path of Decode for the signal messages clients
// send (JSON.stringify and encoding/json both write them so):
// {"type":"signal","to":"<to>","data":<data>} with nothing else, no
// whitespace and no escapes in to. It skips the reflective decoding of
// the relay hot path. ok false only means "not in that form": Decode then
// has the final word. When ok, Decode would accept b with the same to
// and data.
func DecodeSignal(b []byte) (to string, data []byte, ok bool) {
	if len(b) < len(signalPrefix)+len(`","data":1}`) || string(b[:len(signalPrefix)]) != signalPrefix || b[len(b)-1] != '}' {
		return "", nil, false
	}
	rest := b[len(signalPrefix) : len(b)-1]
	end := -1
	for i, c := range rest {
		if c == '"' {
			end = i
			break
		}
		if c < 0x20 || c > 0x7e || c == '\\' || i >= MaxIDLen {
			return "", nil, false
		}
	}
	if end <= 0 || string(rest[end:min(len(rest), end+len(`","data":`))]) != `","data":` {
		return "", nil, false
	}
	data = rest[end+len(`","data":`):]
	if len(data) == 0 || isSpace(data[0]) || isSpace(data[len(data)-1]) || string(data) == "null" || !json.Valid(data) {
		return "", nil, false
	}
	return string(rest[:end]), data, true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// SignalLen is the length of AppendSignal's output for from and data: a
// buffer of this capacity takes it without growing.
func SignalLen(from string, data []byte) int {
	return len(`{"type":"signal","from":"","data":}`) + len(from) + len(data)
}

// AppendSignal appends the relayed form of a signal, {"type":"signal",
// "from":from,"data":data}, to dst without reflection: this is the
// signaling hot path. from must be JSON-safe (member IDs are hex).
func AppendSignal(dst []byte, from string, data []byte) []byte {
	dst = append(dst, `{"type":"signal","from":"`...)
	dst = append(dst, from...)
	dst = append(dst, `","data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// ErrorMessage builds an error reply.
func ErrorMessage(code, msg string) Message {
	return Message{Type: TypeError, Code: code, Message: msg}
}
