package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The media relay's wire format (media.go). Everything a node receives
// from NATS is checked here before it reaches the SFU: another node, or
// anything else that can publish on the cluster's subjects, may send
// garbage.
//
// Subjects, with <origin> the origin node's ID, <stream> the stream name
// in base64url and <track> the origin room's track ID in base64url:
//
//	parley.media.<origin>.<stream>.tracks   request: the stream's tracks (JSON reply)
//	parley.media.<origin>.<stream>.lease    request, body the edge's node ID: keep sending (reply "ok <tracks>" or "gone")
//	parley.media.<origin>.<stream>.bye      body the edge's node ID: this edge stopped
//	parley.media.<origin>.<stream>.pli      body <track>: a keyframe, please
//	parley.media.<origin>.<stream>.t.<track>  the track's packets, origin → every edge
//
// A track message is one byte of kind then the body: 'r' and one RTP
// packet (as the origin's subscription rewrote it: continuous sequence
// numbers and timestamps), or 'e', the track ended.

const (
	mediaSubjects = "parley.media."
	msgRTP        = 'r'
	msgEnd        = 'e'
	maxRelayRTP   = 1500 // the SFU's largest packet
	maxRelayTrack = 16   // tracks of one stream
	maxRelayID    = 256  // track and stream IDs
	maxRelayFmtp  = 512
	relayOK       = "ok"
	relayGone     = "gone"
)

var errRelayMsg = errors.New("cluster: bad relay message")

// relayTrack describes one of the origin's tracks (the reply to
// .tracks).
type relayTrack struct {
	ID        string `json:"id"`        // the origin room's TrackInfo.ID
	Publisher string `json:"publisher"` // its source's ID (a member's, for a group room)
	TrackID   string `json:"track_id"`
	StreamID  string `json:"stream_id"`
	Mime      string `json:"mime"`
	Clock     uint32 `json:"clock"`
	Channels  uint16 `json:"channels,omitempty"`
	Fmtp      string `json:"fmtp,omitempty"`
	PT        uint8  `json:"pt"`
	Shared    bool   `json:"shared,omitempty"`
}

type relayTracks struct {
	Tracks []relayTrack `json:"tracks"`
	Err    string       `json:"err,omitempty"`
}

// relayMimes are the codecs a relay carries (what the SFU forwards).
var relayMimes = []string{
	webrtc.MimeTypeOpus, "audio/red", webrtc.MimeTypePCMU, webrtc.MimeTypePCMA, webrtc.MimeTypeG722,
	webrtc.MimeTypeVP8, webrtc.MimeTypeVP9, webrtc.MimeTypeH264, webrtc.MimeTypeH265, webrtc.MimeTypeAV1,
}

var relayIDRE = regexp.MustCompile(`^[\x21-\x7e]{1,256}$`) // printable, no spaces

// codec is the track's codec as the SFU takes it.
func (t relayTrack) codec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: t.Mime, ClockRate: t.Clock, Channels: t.Channels, SDPFmtpLine: t.Fmtp},
		PayloadType:        webrtc.PayloadType(t.PT),
	}
}

// decodeTracks parses and checks a .tracks reply.
func decodeTracks(b []byte) ([]relayTrack, error) {
	var r relayTracks
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", errRelayMsg, err)
	}
	if r.Err != "" {
		return nil, fmt.Errorf("cluster: origin: %.200s", r.Err)
	}
	if len(r.Tracks) == 0 || len(r.Tracks) > maxRelayTrack {
		return nil, fmt.Errorf("%w: %d tracks", errRelayMsg, len(r.Tracks))
	}
	seen := map[string]bool{}
	for _, t := range r.Tracks {
		if err := t.check(); err != nil {
			return nil, err
		}
		if seen[t.ID] {
			return nil, fmt.Errorf("%w: track %q twice", errRelayMsg, t.ID)
		}
		seen[t.ID] = true
	}
	return r.Tracks, nil
}

func (t relayTrack) check() error {
	if !relayIDRE.MatchString(t.ID) || !relayIDRE.MatchString(t.Publisher) || len(t.TrackID) > maxRelayID || len(t.StreamID) > maxRelayID {
		return fmt.Errorf("%w: track IDs", errRelayMsg)
	}
	known := false
	for _, m := range relayMimes {
		known = known || strings.EqualFold(m, t.Mime)
	}
	switch {
	case !known:
		return fmt.Errorf("%w: codec %.40q", errRelayMsg, t.Mime)
	case t.Clock == 0 || t.Clock > 192000:
		return fmt.Errorf("%w: clock rate %d", errRelayMsg, t.Clock)
	case t.Channels > 8:
		return fmt.Errorf("%w: %d channels", errRelayMsg, t.Channels)
	case len(t.Fmtp) > maxRelayFmtp || strings.ContainsAny(t.Fmtp, "\r\n\x00"):
		return fmt.Errorf("%w: fmtp", errRelayMsg)
	case t.PT > 127:
		return fmt.Errorf("%w: payload type %d", errRelayMsg, t.PT)
	}
	return nil
}

// appendRTPMsg appends a track message carrying one RTP packet.
func appendRTPMsg(b []byte, h *rtp.Header, payload []byte) ([]byte, error) {
	n := h.MarshalSize()
	b = append(b, msgRTP)
	start := len(b)
	b = append(b, make([]byte, n)...)
	if _, err := h.MarshalTo(b[start:]); err != nil {
		return b[:start-1], fmt.Errorf("cluster: relay: %w", err)
	}
	return append(b, payload...), nil
}

// decodeTrackMsg checks a track message: end, or one RTP packet (version
// 2, a header that parses, at most maxRelayRTP bytes) returned as pkt
// (aliasing b).
func decodeTrackMsg(b []byte) (end bool, pkt []byte, err error) {
	if len(b) == 0 {
		return false, nil, fmt.Errorf("%w: empty", errRelayMsg)
	}
	switch b[0] {
	case msgEnd:
		if len(b) != 1 {
			return false, nil, fmt.Errorf("%w: end with a body", errRelayMsg)
		}
		return true, nil, nil
	case msgRTP:
	default:
		return false, nil, fmt.Errorf("%w: kind %#x", errRelayMsg, b[0])
	}
	pkt = b[1:]
	if len(pkt) < 12 || len(pkt) > maxRelayRTP {
		return false, nil, fmt.Errorf("%w: RTP packet of %d bytes", errRelayMsg, len(pkt))
	}
	var h rtp.Header
	n, err := h.Unmarshal(pkt)
	if err != nil || h.Version != 2 {
		return false, nil, fmt.Errorf("%w: RTP header", errRelayMsg)
	}
	if h.Padding && (n >= len(pkt) || pkt[len(pkt)-1] == 0 || int(pkt[len(pkt)-1]) > len(pkt)-n) {
		return false, nil, fmt.Errorf("%w: RTP padding", errRelayMsg)
	}
	return false, pkt, nil
}

// appendLease is the origin's answer to a lease: ok and its number of
// tracks (an edge relaying fewer asks for the list again).
func appendLease(b []byte, tracks int) []byte {
	return strconv.AppendInt(append(b, relayOK+" "...), int64(tracks), 10)
}

// decodeLease reads a lease answer; ok is false for "gone" and anything
// else.
func decodeLease(b []byte) (tracks int, ok bool) {
	s, found := strings.CutPrefix(string(b), relayOK+" ")
	if !found {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxRelayTrack {
		return 0, false
	}
	return n, true
}

// nodeIDRE is a node ID (--cluster-node's rule).
var nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
