package whip

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
)

// SDPFrag is the content of an application/trickle-ice-sdpfrag body
// (RFC 8840) as far as WHIP/WHEP use it: ICE credentials and candidates
// per media section.
type SDPFrag struct {
	ICEUfrag string
	ICEPwd   string
	Media    []FragMedia
}

// FragMedia is one media section of an SDP fragment.
type FragMedia struct {
	Name            string // the m= line value, e.g. "audio 9 UDP/TLS/RTP/SAVPF 111"
	Mid             string
	Candidates      []string // candidate attribute values, without "candidate:"
	EndOfCandidates bool
}

// ErrFrag is wrapped by every sdpfrag parse error.
var ErrFrag = errors.New("bad sdpfrag")

// maxFragLines bounds the work ParseSDPFrag does.
const maxFragLines = 1000

// ParseSDPFrag parses a trickle-ice-sdpfrag body. It accepts CRLF or LF
// line ends, keeps ICE credentials from session or media level (the first
// seen wins), and ignores attributes it does not need.
func ParseSDPFrag(body string) (SDPFrag, error) {
	var f SDPFrag
	lines := strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n")
	if len(lines) > maxFragLines {
		return f, fmt.Errorf("%w: more than %d lines", ErrFrag, maxFragLines)
	}
	var cur *FragMedia
	for i, line := range lines {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		if len(line) < 2 || line[1] != '=' || line[0] < 'a' || line[0] > 'z' {
			return f, fmt.Errorf("%w: line %d is not an SDP line: %q", ErrFrag, i+1, clip(line))
		}
		typ, val := line[0], line[2:]
		switch typ {
		case 'm':
			f.Media = append(f.Media, FragMedia{Name: val})
			cur = &f.Media[len(f.Media)-1]
			continue
		case 'a':
		default:
			continue
		}
		key, v, _ := strings.Cut(val, ":")
		switch key {
		case "ice-ufrag":
			if v == "" {
				return f, fmt.Errorf("%w: empty ice-ufrag", ErrFrag)
			}
			if f.ICEUfrag == "" {
				f.ICEUfrag = v
			}
		case "ice-pwd":
			if v == "" {
				return f, fmt.Errorf("%w: empty ice-pwd", ErrFrag)
			}
			if f.ICEPwd == "" {
				f.ICEPwd = v
			}
		case "mid":
			if cur == nil {
				return f, fmt.Errorf("%w: a=mid outside a media section", ErrFrag)
			}
			cur.Mid = v
		case "candidate":
			if cur == nil {
				return f, fmt.Errorf("%w: a=candidate outside a media section", ErrFrag)
			}
			if len(strings.Fields(v)) < 8 {
				return f, fmt.Errorf("%w: short candidate %q", ErrFrag, clip(v))
			}
			cur.Candidates = append(cur.Candidates, v)
		case "end-of-candidates":
			if cur != nil {
				cur.EndOfCandidates = true
			}
		}
	}
	if (f.ICEUfrag == "") != (f.ICEPwd == "") {
		return f, fmt.Errorf("%w: ice-ufrag and ice-pwd must come together", ErrFrag)
	}
	return f, nil
}

// String formats the fragment as an application/trickle-ice-sdpfrag body.
func (f SDPFrag) String() string {
	var b strings.Builder
	if f.ICEUfrag != "" {
		fmt.Fprintf(&b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", f.ICEUfrag, f.ICEPwd)
	}
	for _, m := range f.Media {
		fmt.Fprintf(&b, "m=%s\r\n", m.Name)
		if m.Mid != "" {
			fmt.Fprintf(&b, "a=mid:%s\r\n", m.Mid)
		}
		for _, c := range m.Candidates {
			fmt.Fprintf(&b, "a=candidate:%s\r\n", c)
		}
		if m.EndOfCandidates {
			b.WriteString("a=end-of-candidates\r\n")
		}
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// FragFromSDP extracts the ICE credentials and the candidates of the first
// (bundled) media section of a session description: what a WHIP client
// PATCHes for an ICE restart, and what a server answers it with.
func FragFromSDP(desc string) (SDPFrag, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(desc); err != nil {
		return SDPFrag{}, fmt.Errorf("whip: session description: %w", err)
	}
	var f SDPFrag
	take := func(attrs []sdp.Attribute) {
		for _, a := range attrs {
			switch a.Key {
			case "ice-ufrag":
				if f.ICEUfrag == "" {
					f.ICEUfrag = a.Value
				}
			case "ice-pwd":
				if f.ICEPwd == "" {
					f.ICEPwd = a.Value
				}
			}
		}
	}
	take(sd.Attributes)
	if len(sd.MediaDescriptions) > 0 {
		md := sd.MediaDescriptions[0]
		take(md.Attributes)
		m := FragMedia{Name: md.MediaName.String(), EndOfCandidates: true}
		if mid, ok := md.Attribute("mid"); ok {
			m.Mid = mid
		}
		for _, a := range md.Attributes {
			if a.Key == "candidate" {
				m.Candidates = append(m.Candidates, a.Value)
			}
		}
		f.Media = append(f.Media, m)
	}
	return f, nil
}
