package sfu

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Errors a signaling layer maps to client-visible responses.
var (
	ErrBadOffer    = errors.New("sfu: bad offer")
	ErrBadAnswer   = errors.New("sfu: bad answer")
	ErrNoSuchTrack = errors.New("sfu: no such track")
	// ErrGlare: a client offer arrived while a server offer is outstanding.
	ErrGlare = errors.New("sfu: glare: a server offer is outstanding; answer it, then offer again")
	// ErrNotAllowed: the participant lacks the right (see NoPublish, NoSubscribe).
	ErrNotAllowed = errors.New("sfu: not allowed")
)

// CodecError says that an offer shares no codec with the SFU (or, with
// Stream set, with the stream being subscribed to).
type CodecError struct {
	Kind      string   // "audio" or "video"
	Offered   []string // MIME types in the offer
	Supported []string // MIME types that would have worked
	Stream    bool     // Supported lists the stream's codec, not the SFU's
}

func (e *CodecError) Error() string {
	what := "supported"
	if e.Stream {
		what = "the stream uses"
	}
	return fmt.Sprintf("sfu: no usable %s codec: offered [%s], %s [%s]",
		e.Kind, strings.Join(e.Offered, " "), what, strings.Join(e.Supported, " "))
}

// OfferInfo summarizes a validated offer.
type OfferInfo struct {
	Audio, Video []webrtc.RTPCodecCapability // codecs the SFU also supports, per kind
	Sending      int                         // audio/video sections the client sends on
	Receiving    int                         // audio/video sections the client receives on
	Data         bool                        // an application (data channel) section
}

// ValidateOffer parses an SDP offer and checks that every audio and video
// section carries at least one codec the SFU supports. Parse failures wrap
// ErrBadOffer; codec failures are *CodecError.
func ValidateOffer(offer string) (*OfferInfo, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("%w: malformed SDP: %w", ErrBadOffer, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return nil, fmt.Errorf("%w: no media sections", ErrBadOffer)
	}
	supported := codecTable()
	info := &OfferInfo{}
	for _, md := range sd.MediaDescriptions {
		kind := md.MediaName.Media
		if kind == "application" && md.MediaName.Port.Value != 0 {
			info.Data = true
		}
		if kind != "audio" && kind != "video" {
			continue
		}
		if md.MediaName.Port.Value == 0 {
			continue // rejected section
		}
		dir := direction(md, &sd)
		if dir == "sendrecv" || dir == "sendonly" {
			info.Sending++
		}
		if dir == "sendrecv" || dir == "recvonly" {
			info.Receiving++
		}
		offered, usable := sectionCodecs(md, kind, supported)
		if len(usable) == 0 {
			return nil, &CodecError{Kind: kind, Offered: offered, Supported: supportedOfKind(kind)}
		}
		if kind == "audio" {
			info.Audio = append(info.Audio, usable...)
		} else {
			info.Video = append(info.Video, usable...)
		}
	}
	if info.Sending+info.Receiving == 0 && !info.Data {
		return nil, fmt.Errorf("%w: no audio, video or data section", ErrBadOffer)
	}
	return info, nil
}

func direction(md *sdp.MediaDescription, sd *sdp.SessionDescription) string {
	for _, d := range []string{"sendrecv", "sendonly", "recvonly", "inactive"} {
		if _, ok := md.Attribute(d); ok {
			return d
		}
	}
	for _, a := range sd.Attributes {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return "sendrecv"
}

// sectionCodecs lists the offered MIME types of a section and the offered
// codecs the SFU supports (RTX/FEC/telephone-event are not media codecs).
func sectionCodecs(md *sdp.MediaDescription, kind string, supported []webrtc.RTPCodecParameters) (offered []string, usable []webrtc.RTPCodecCapability) {
	fmtps := map[string]string{}
	names := map[string]string{}
	for _, a := range md.Attributes {
		pt, rest, _ := strings.Cut(a.Value, " ")
		switch a.Key {
		case "rtpmap":
			name, _, _ := strings.Cut(rest, "/")
			names[pt] = name
		case "fmtp":
			fmtps[pt] = rest
		}
	}
	seen := map[string]bool{}
	for _, f := range md.MediaName.Formats {
		name := names[f]
		if name == "" {
			// static payload types need no rtpmap
			switch f {
			case "0":
				name = "PCMU"
			case "8":
				name = "PCMA"
			default:
				continue
			}
		}
		lname := strings.ToLower(name)
		if lname == "rtx" || lname == "red" || lname == "ulpfec" || lname == "flexfec-03" || lname == "telephone-event" || lname == "cn" {
			continue
		}
		mime := kind + "/" + name
		if !seen[strings.ToLower(mime)] {
			seen[strings.ToLower(mime)] = true
			offered = append(offered, mime)
		}
		c := webrtc.RTPCodecCapability{MimeType: mime, SDPFmtpLine: fmtps[f]}
		for _, s := range supported {
			if sameCodec(s.RTPCodecCapability, c) {
				usable = append(usable, c)
				break
			}
		}
	}
	return offered, usable
}

func supportedOfKind(kind string) []string {
	var out []string
	for _, m := range SupportedCodecs() {
		if strings.HasPrefix(strings.ToLower(m), kind+"/") {
			out = append(out, m)
		}
	}
	return out
}

func mimeList(cs []webrtc.RTPCodecCapability) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range cs {
		if !seen[strings.ToLower(c.MimeType)] {
			seen[strings.ToLower(c.MimeType)] = true
			out = append(out, c.MimeType)
		}
	}
	return out
}

// replaceICECredentials rewrites an offer with new ICE credentials and,
// if given, a new candidate list (for client-initiated ICE restarts).
func replaceICECredentials(offer, ufrag, pwd string, candidates []string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	// Bump the origin version: this is a new offer.
	sd.Origin.SessionVersion++
	set := func(attrs []sdp.Attribute, first bool) []sdp.Attribute {
		out := attrs[:0:0]
		for _, a := range attrs {
			switch a.Key {
			case "ice-ufrag", "ice-pwd":
				continue
			case "candidate", "end-of-candidates":
				if candidates != nil {
					continue
				}
			}
			out = append(out, a)
		}
		out = append(out, sdp.Attribute{Key: "ice-ufrag", Value: ufrag}, sdp.Attribute{Key: "ice-pwd", Value: pwd})
		if first {
			for _, c := range candidates {
				out = append(out, sdp.Attribute{Key: "candidate", Value: strings.TrimPrefix(c, "candidate:")})
			}
		}
		return out
	}
	hadSession := false
	for _, a := range sd.Attributes {
		if a.Key == "ice-ufrag" {
			hadSession = true
		}
	}
	if hadSession {
		sd.Attributes = set(sd.Attributes, false)
	}
	for i, md := range sd.MediaDescriptions {
		md.Attributes = set(md.Attributes, i == 0)
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("sfu: marshal offer: %w", err)
	}
	return string(b), nil
}

// WithoutSending rewrites an offer so that the client sends on none of its
// audio and video sections: sendonly becomes inactive, sendrecv becomes
// recvonly, and the sections' sending details (ssrc, msid, rid, simulcast)
// go. The answer to the rewritten offer is a valid answer to the original
// one, with those sections not receiving: the client keeps receiving and
// its data channel, and sends no media. It returns the new offer and how
// many sections it changed.
func WithoutSending(offer string) (string, int, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return "", 0, fmt.Errorf("%w: malformed SDP: %w", ErrBadOffer, err)
	}
	changed := 0
	for _, md := range sd.MediaDescriptions {
		kind := md.MediaName.Media
		if (kind != "audio" && kind != "video") || md.MediaName.Port.Value == 0 {
			continue
		}
		var to string
		switch direction(md, &sd) {
		case "sendonly":
			to = "inactive"
		case "sendrecv":
			to = "recvonly"
		default:
			continue
		}
		out := md.Attributes[:0:0]
		for _, a := range md.Attributes {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive", "ssrc", "ssrc-group", "msid", "rid", "simulcast":
				continue
			}
			out = append(out, a)
		}
		md.Attributes = append(out, sdp.Attribute{Key: to})
		changed++
	}
	if changed == 0 {
		return offer, 0, nil
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", 0, fmt.Errorf("sfu: marshal offer: %w", err)
	}
	return string(b), changed, nil
}

// withOpusFECAndDTX asks for Opus in-band FEC and allows DTX in an answer
// the SFU sends: pion copies the offerer's fmtp line into its answer, and
// these parameters state what the SFU, as the receiver, wants. Lines other
// than Opus's fmtp are kept as they are.
func withOpusFECAndDTX(desc string) string {
	lines := strings.SplitAfter(desc, "\n")
	opus := map[string]bool{}
	for _, l := range lines {
		if pt, codec, ok := sdpAttr(l, "rtpmap"); ok && strings.HasPrefix(strings.ToLower(codec), "opus/") {
			opus[pt] = true
		}
	}
	if len(opus) == 0 {
		return desc
	}
	hasFmtp := map[string]bool{}
	for i, l := range lines {
		if pt, params, ok := sdpAttr(l, "fmtp"); ok && opus[pt] {
			hasFmtp[pt] = true
			lines[i] = "a=fmtp:" + pt + " " + setFmtp(params, "useinbandfec", "usedtx") + "\r\n"
		}
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		if pt, _, ok := sdpAttr(l, "rtpmap"); ok && opus[pt] && !hasFmtp[pt] {
			b.WriteString("a=fmtp:" + pt + " useinbandfec=1;usedtx=1\r\n")
		}
	}
	return b.String()
}

// withREDFirst puts RED first among an answer's audio payload types: a
// browser sends the first codec of the answer, and pion keeps the
// offerer's order, where Opus comes first (red.go).
func withREDFirst(desc string) string {
	lines := strings.SplitAfter(desc, "\n")
	mline := -1
	var red []string
	flush := func() {
		if mline < 0 || len(red) == 0 {
			return
		}
		f := strings.Fields(lines[mline])
		if len(f) < 4 {
			return
		}
		order := slices.Clone(red)
		for _, pt := range f[3:] {
			if !slices.Contains(red, pt) {
				order = append(order, pt)
			}
		}
		lines[mline] = strings.Join(append(f[:3:3], order...), " ") + "\r\n"
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "m=") {
			flush()
			mline, red = -1, nil
			if strings.HasPrefix(l, "m=audio ") {
				mline = i
			}
			continue
		}
		if pt, codec, ok := sdpAttr(l, "rtpmap"); ok && mline >= 0 && strings.HasPrefix(strings.ToLower(codec), "red/") {
			red = append(red, pt)
		}
	}
	flush()
	return strings.Join(lines, "")
}

// sdpAttr splits an "a=name:<pt> <value>" line.
func sdpAttr(line, name string) (pt, value string, ok bool) {
	rest, ok := strings.CutPrefix(line, "a="+name+":")
	if !ok {
		return "", "", false
	}
	pt, value, ok = strings.Cut(strings.TrimRight(rest, "\r\n"), " ")
	return pt, value, ok
}

// setFmtp sets each of keys to 1 in an fmtp parameter list.
func setFmtp(params string, keys ...string) string {
	var out []string
	set := map[string]bool{}
	for _, kv := range strings.Split(params, ";") {
		k, _, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k == "" {
			continue
		}
		if slices.Contains(keys, strings.ToLower(k)) {
			kv, set[strings.ToLower(k)] = strings.ToLower(k)+"=1", true
		}
		out = append(out, strings.TrimSpace(kv))
	}
	for _, k := range keys {
		if !set[k] {
			out = append(out, k+"=1")
		}
	}
	return strings.Join(out, ";")
}
