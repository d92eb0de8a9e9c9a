package sfu

import "errors"

var errBadPadding = errors.New("sfu: bad RTP padding")

// codecKind classifies a negotiated MIME type for keyframe detection.
type codecKind uint8

const (
	codecOther codecKind = iota
	codecVP8
	codecVP9
	codecH264
	codecAV1
	codecH265
)

func codecKindOf(mime string) codecKind {
	switch lower(mime) {
	case "video/vp8":
		return codecVP8
	case "video/vp9":
		return codecVP9
	case "video/h264":
		return codecH264
	case "video/av1":
		return codecAV1
	case "video/h265":
		return codecH265
	}
	return codecOther
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// isKeyframeStart reports whether an RTP payload of the given codec is the
// first packet of a keyframe, i.e. a decoder can start from it.
func isKeyframeStart(k codecKind, p []byte) bool {
	switch k {
	case codecVP8:
		return vp8KeyframeStart(p)
	case codecVP9:
		return vp9KeyframeStart(p)
	case codecH264:
		return h264KeyframeStart(p)
	case codecAV1:
		return av1KeyframeStart(p)
	case codecH265:
		return h265KeyframeStart(p)
	}
	return false
}

// vp8KeyframeStart parses the RFC 7741 payload descriptor: the packet must
// start partition 0 of a frame whose header has the P (inter-frame) bit clear.
func vp8KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x := p[0]&0x80 != 0
	s := p[0]&0x10 != 0
	pid := p[0] & 0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture ID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 { // M: 15-bit picture ID
				i += 2
			} else {
				i++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/KEYIDX byte
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// vp9KeyframeStart parses the VP9 payload descriptor (RFC 9628): beginning of
// a frame (B) that is not inter-picture predicted (P clear), in spatial layer 0.
func vp9KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	hasI, interP, hasL, flex, begin := b0&0x80 != 0, b0&0x40 != 0, b0&0x20 != 0, b0&0x10 != 0, b0&0x08 != 0
	if interP || !begin {
		return false
	}
	i := 1
	if hasI {
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	if hasL {
		if len(p) <= i {
			return false
		}
		sid := (p[i] >> 1) & 0x07
		if sid != 0 {
			return false
		}
		_ = flex
	}
	return true
}

// h264KeyframeStart looks for an IDR slice or an SPS at the start of the
// payload: single NAL unit, STAP-A aggregate, or the first FU-A fragment.
func h264KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case 5, 7:
		return true
	case 24: // STAP-A
		i := 1
		for i+2 < len(p) {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if nt := p[i] & 0x1f; nt == 5 || nt == 7 {
				return true
			}
			i += size
		}
	case 28: // FU-A
		if len(p) < 2 {
			return false
		}
		start := p[1]&0x80 != 0
		nt := p[1] & 0x1f
		return start && (nt == 5 || nt == 7)
	}
	return false
}

// h265KeyframeStart looks for an IRAP picture (BLA, IDR, CRA: NAL types
// 16-21) or a VPS/SPS at the start of the payload (RFC 7798): single NAL
// unit, aggregation packet, or the first fragmentation unit.
func h265KeyframeStart(p []byte) bool {
	if len(p) < 3 {
		return false
	}
	key := func(t byte) bool { return t >= 16 && t <= 21 || t == 32 || t == 33 }
	switch t := p[0] >> 1 & 0x3f; t {
	case 48: // aggregation packet: 16-bit sizes, no DONL
		for i := 2; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if key(p[i] >> 1 & 0x3f) {
				return true
			}
			i += size
		}
		return false
	case 49: // fragmentation unit: its header after the 2-byte payload header
		return p[2]&0x80 != 0 && key(p[2]&0x3f)
	default:
		return key(t)
	}
}

// av1KeyframeStart reads the AV1 RTP aggregation header: N (first packet of
// a coded video sequence) set and Z (continuation of an OBU) clear.
func av1KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	return p[0]&0x08 != 0 && p[0]&0x80 == 0
}

// audioLevel extracts the RFC 6464 level (0 = loudest, 127 = silence) from
// the one-byte extension payload.
func audioLevel(ext []byte) (level uint8, voice bool, ok bool) {
	if len(ext) < 1 {
		return 0, false, false
	}
	return ext[0] & 0x7f, ext[0]&0x80 != 0, true
}

// layerRank maps a simulcast RID to a quality rank (0 = lowest).
func layerRank(rid string) int {
	switch lower(rid) {
	case "", "q", "l", "low", "0":
		return 0
	case "h", "m", "mid", "medium", "1":
		return 1
	case "f", "hi", "high", "full", "2":
		return 2
	}
	return 1
}
