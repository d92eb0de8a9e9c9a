package srt

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/parley/parley/internal/ingest"
)

// maxStreamID bounds the streamid (SRT's own limit is 512 bytes).
const maxStreamID = 512

// StreamID is what a caller's streamid asks for.
type StreamID struct {
	Action ingest.Action // ingest.Publish or ingest.Read
	Stream string
	Token  string // "" when none
}

// ParseStreamID reads the two forms a caller may send:
//
//	publish:<stream>[:<token>]    read:<stream>[:<token>]
//	#!::r=<stream>,m=publish|request,t=<token>   (SRT Access Control)
//
// In the Access Control form m defaults to request (read), t is optional,
// and the keys u, s and h (user, session, host) are accepted and ignored.
// A percent-encoded streamid ("%23!::r=...") is decoded first.
// valid checks the stream name.
func ParseStreamID(s string, valid func(string) bool) (StreamID, error) {
	if s == "" {
		return StreamID{}, errors.New("no streamid: use streamid=publish:<stream> or streamid=read:<stream>")
	}
	if len(s) > maxStreamID {
		return StreamID{}, fmt.Errorf("streamid longer than %d bytes", maxStreamID)
	}
	if strings.Contains(s, "%") { // some tools pass it percent-encoded, as in their URL
		u, err := url.PathUnescape(s)
		if err != nil {
			return StreamID{}, fmt.Errorf("streamid: %w", err)
		}
		s = u
	}
	var id StreamID
	if rest, ok := strings.CutPrefix(s, "#!::"); ok {
		var err error
		if id, err = parseAccessControl(rest); err != nil {
			return StreamID{}, err
		}
	} else {
		mode, rest, ok := strings.Cut(s, ":")
		if !ok {
			return StreamID{}, fmt.Errorf("streamid %q: use publish:<stream>[:<token>] or read:<stream>[:<token>]", s)
		}
		if id.Action, ok = action(mode, "read"); !ok {
			return StreamID{}, fmt.Errorf("streamid mode %q: use publish or read", mode)
		}
		id.Stream, id.Token, _ = strings.Cut(rest, ":")
		if strings.Contains(id.Token, ":") {
			return StreamID{}, errors.New("streamid has more than three ':'-separated parts")
		}
	}
	if !valid(id.Stream) {
		return StreamID{}, fmt.Errorf("%q is not a stream name (1-64 of A-Z a-z 0-9 _ . -)", id.Stream)
	}
	return id, nil
}

// parseAccessControl reads the key=value list after "#!::".
func parseAccessControl(s string) (StreamID, error) {
	id := StreamID{Action: ingest.Read}
	seen := map[string]bool{}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return StreamID{}, fmt.Errorf("streamid: %q is not key=value", kv)
		}
		if seen[k] {
			return StreamID{}, fmt.Errorf("streamid: key %q twice", k)
		}
		seen[k] = true
		switch k {
		case "r":
			id.Stream = v
		case "t":
			id.Token = v
		case "m":
			if id.Action, ok = action(v, "request"); !ok {
				return StreamID{}, fmt.Errorf("streamid: m=%q: use m=publish or m=request", v)
			}
		case "u", "s", "h":
		default:
			return StreamID{}, fmt.Errorf("streamid: unknown key %q (use r, m, t)", k)
		}
	}
	if !seen["r"] {
		return StreamID{}, errors.New("streamid: no r=<stream>")
	}
	return id, nil
}

// action reads a mode: "publish", or read (named readWord in this form).
func action(mode, readWord string) (ingest.Action, bool) {
	switch mode {
	case "publish":
		return ingest.Publish, true
	case readWord:
		return ingest.Read, true
	}
	return "", false
}
