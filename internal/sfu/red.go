package sfu

import (
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"
)

// Redundant audio (RFC 2198, "RED"): a browser that publishes Opus with
// RED puts the previous packet's audio into each packet, so a receiver
// that lost one packet takes it from the next. The SFU negotiates
// audio/red first for audio, forwards RED untouched to subscribers that
// take it (their payload types written into the blocks), and the primary
// encoding, plain Opus, to those that do not and to sinks (recorders,
// muxers); a plain Opus track reaches a subscriber that only takes RED
// as RED with no redundant block.

const mimeRED = "audio/red"

// redPT is the payload type Parley offers for RED ("111/111": Opus
// inside, as Chromium numbers them).
const redPT = 63

func isRED(mime string) bool { return strings.EqualFold(mime, mimeRED) }

// mediaMime is the codec a track's packets decode as: Opus for RED.
func mediaMime(mime string) string {
	if isRED(mime) {
		return webrtc.MimeTypeOpus
	}
	return mime
}

// mediaCodec is c as its packets decode: RED and Opus alike.
func mediaCodec(c webrtc.RTPCodecCapability) webrtc.RTPCodecCapability {
	c.MimeType = mediaMime(c.MimeType)
	return c
}

// redInnerPT is the payload type of the encoding inside RED, from its
// fmtp ("111/111"); 111 when it does not say.
func redInnerPT(fmtp string) uint8 {
	first, _, _ := strings.Cut(strings.TrimSpace(fmtp), "/")
	if pt, err := strconv.ParseUint(first, 10, 7); err == nil {
		return uint8(pt)
	}
	return 111
}

// isRED reports whether a packet of u with payload type pt is RED: a
// browser that negotiated it may send either (it follows the order of
// each new description).
func (u *upTrack) isRED(pt uint8) bool { return u.redPT != 0 && pt == u.redPT }

// publisherCodec is the codec a WebRTC publisher's track is taken as: for
// audio, RED when the publisher negotiated it, whatever its first packet
// was (the track then carries either, see isRED).
func publisherCodec(first webrtc.RTPCodecParameters, negotiated []webrtc.RTPCodecParameters) webrtc.RTPCodecParameters {
	if codecKindOfMime(first.MimeType) != webrtc.RTPCodecTypeAudio {
		return first
	}
	for _, c := range negotiated {
		if isRED(c.MimeType) {
			return c
		}
	}
	return first
}

// redPrimary returns the primary encoding of a RED payload: what follows
// the block headers (4 bytes each while the F bit is set, then 1) and the
// redundant blocks they give the lengths of; false when malformed.
func redPrimary(p []byte) ([]byte, bool) {
	i, skip := 0, 0
	for {
		if i >= len(p) {
			return nil, false
		}
		if p[i]&0x80 == 0 {
			i++
			break
		}
		if i+4 > len(p) {
			return nil, false
		}
		skip += int(p[i+2]&0x03)<<8 | int(p[i+3])
		i += 4
	}
	if i+skip > len(p) {
		return nil, false
	}
	return p[i+skip:], true
}

// redSetPT writes pt into every block header of a RED payload (the
// subscriber's number for the encoding inside), in place.
func redSetPT(p []byte, pt uint8) {
	for i := 0; i < len(p); i += 4 {
		p[i] = p[i]&0x80 | pt&0x7f
		if p[i]&0x80 == 0 {
			return
		}
	}
}
