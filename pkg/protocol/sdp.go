package protocol

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"
)

// MaxSDP bounds an inflated session description (a 50-member group call's
// offer is well under 100 KB).
const MaxSDP = 1 << 20

// ErrSDPTooLarge: a deflated session description inflates past MaxSDP.
var ErrSDPTooLarge = errors.New("protocol: sdp inflates past the size limit")

// SDP is the "sdp" object of a "media" message: a session description
// whose text is either plain in SDP or, in its compact form, in Deflate:
// base64 (standard alphabet, padded) of the raw DEFLATE (RFC 1951, no zlib
// or gzip header) of the text, what browsers produce with
// CompressionStream("deflate-raw"). Group-call descriptions grow with the
// room's tracks and are repetitive; deflated they are about a tenth.
type SDP struct {
	Type    string `json:"type"` // "offer" or "answer"
	SDP     string `json:"sdp,omitempty"`
	Deflate string `json:"deflate,omitempty"`
}

// deflaters keeps flate writers (about 1 MB each) for reuse.
var deflaters sync.Pool

// DeflateSDP returns the compact form of a session description.
func DeflateSDP(typ, sdp string) SDP {
	var b bytes.Buffer
	w, _ := deflaters.Get().(*flate.Writer)
	if w == nil {
		w, _ = flate.NewWriter(&b, flate.BestCompression) // the level is valid
	} else {
		w.Reset(&b)
	}
	_, _ = w.Write([]byte(sdp)) // a bytes.Buffer does not fail
	_ = w.Close()
	deflaters.Put(w)
	return SDP{Type: typ, Deflate: base64.StdEncoding.EncodeToString(b.Bytes())}
}

// Text returns the session description's text, inflating the compact form
// (at most MaxSDP bytes).
func (s SDP) Text() (string, error) {
	if s.Deflate == "" {
		return s.SDP, nil
	}
	raw, err := base64.StdEncoding.DecodeString(s.Deflate)
	if err != nil {
		return "", fmt.Errorf("protocol: sdp deflate: %w", err)
	}
	r := flate.NewReader(bytes.NewReader(raw))
	defer r.Close()
	text, err := io.ReadAll(io.LimitReader(r, MaxSDP+1))
	if err != nil {
		return "", fmt.Errorf("protocol: sdp deflate: %w", err)
	}
	if len(text) > MaxSDP {
		return "", ErrSDPTooLarge
	}
	return string(text), nil
}
