// Package synth makes synthetic media for the load tools: VP8 frames whose
// headers are valid (an SFU sees keyframes and inter frames where they
// are) and whose sizes give a requested bitrate, so no video file has to
// ship with the server binary. The frames do not decode to a picture:
// tests that need a decoder's approval use a real clip.
package synth

import (
	"encoding/binary"
	"fmt"
)

// VP8 generates frames of a constant-bitrate VP8 stream with a keyframe
// every KeyEvery frames. The zero value is not usable: see NewVP8.
type VP8 struct {
	Bitrate  int // bits per second
	FPS      int
	KeyEvery int // frames between keyframes (the first frame is one)
	Width    int
	Height   int

	keySize, interSize int
}

// NewVP8 returns a generator for bitrate bits/s at fps frames/s with a
// keyframe every keyEvery frames; zero arguments take the defaults
// (1 Mbit/s, 30 fps, a keyframe every 2 s, 640x360). Keyframes are five
// times the size of inter frames, as in camera video, and the sizes over
// one keyframe interval add up to the bitrate.
func NewVP8(bitrate, fps, keyEvery int) (*VP8, error) {
	if bitrate <= 0 {
		bitrate = 1_000_000
	}
	if fps <= 0 {
		fps = 30
	}
	if keyEvery <= 0 {
		keyEvery = 2 * fps
	}
	g := &VP8{Bitrate: bitrate, FPS: fps, KeyEvery: keyEvery, Width: 640, Height: 360}
	avg := float64(bitrate) / 8 / float64(fps)
	// keySize = 5 interSize; one interval is (keyEvery-1) inter frames
	// and one keyframe: (keyEvery+4) interSize = keyEvery avg.
	g.interSize = int(avg * float64(keyEvery) / float64(keyEvery+4))
	g.keySize = 5 * g.interSize
	if g.interSize < 16 {
		return nil, fmt.Errorf("synth: %d bit/s at %d fps is too little for VP8 frames", bitrate, fps)
	}
	return g, nil
}

// IsKeyframe reports whether frame i is a keyframe.
func (g *VP8) IsKeyframe(i int) bool { return i%g.KeyEvery == 0 }

// Frame returns frame i (a new slice). Its 3-byte frame tag (RFC 6386
// section 9.1) marks it as a key or inter frame, shown, with a first
// partition of the whole rest; keyframes carry the start code and the
// picture size. The rest is pseudo-random, so every frame (and every
// packet of it) differs.
func (g *VP8) Frame(i int) []byte {
	size := g.interSize
	key := g.IsKeyframe(i)
	if key {
		size = g.keySize
	}
	b := make([]byte, size)
	hdr := 3
	if key {
		hdr = 10
	}
	// frame tag: bit 0 inter (0 = key frame), bits 1-3 version 0,
	// bit 4 show_frame, bits 5-23 first partition size.
	tag := uint32(1<<4) | uint32(size-hdr)<<5
	if !key {
		tag |= 1
	}
	b[0], b[1], b[2] = byte(tag), byte(tag>>8), byte(tag>>16)
	if key {
		b[3], b[4], b[5] = 0x9d, 0x01, 0x2a
		binary.LittleEndian.PutUint16(b[6:], uint16(g.Width&0x3fff))
		binary.LittleEndian.PutUint16(b[8:], uint16(g.Height&0x3fff))
	}
	// xorshift64, seeded by the frame number.
	x := uint64(i)*0x9e3779b97f4a7c15 + 1
	for j := hdr; j < size; j++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[j] = byte(x)
	}
	return b
}
