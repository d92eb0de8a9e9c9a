package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"time"
)

// The duration of a recording is read back from the file itself, so a
// file left by a killed process (or an earlier run) is listed with the
// span that plays. Only what Parley writes needs to be understood; the
// parsers are bounded and never trust a size.

// maxBoxBody bounds the moov and moof boxes read into memory.
const maxBoxBody = 4 << 20

var errBadFile = errors.New("not a recording Parley can read")

// mp4Duration is a fragmented MP4's playable span: over its tracks, the
// largest end (tfdt base time + trun sample durations) of a fragment
// whose mdat is complete, in the track's mdhd time scale.
func mp4Duration(r io.ReaderAt, size int64) (time.Duration, error) {
	scales := map[uint32]uint32{}
	var end time.Duration
	var pending time.Duration // end of the last moof, counted once its mdat is whole
	var off int64
	for off+8 <= size {
		var h [16]byte
		if _, err := r.ReadAt(h[:8], off); err != nil {
			return 0, err
		}
		boxSize, typ, hdr := int64(binary.BigEndian.Uint32(h[:4])), string(h[4:8]), int64(8)
		switch boxSize {
		case 0:
			boxSize = size - off
		case 1:
			if off+16 > size {
				return end, nil
			}
			if _, err := r.ReadAt(h[8:16], off+8); err != nil {
				return 0, err
			}
			u := binary.BigEndian.Uint64(h[8:16])
			if u > math.MaxInt64 {
				return 0, errBadFile
			}
			boxSize, hdr = int64(u), 16
		}
		if boxSize < hdr {
			return 0, errBadFile
		}
		if boxSize > size-off { // cut short by a kill: what came before plays
			return end, nil
		}
		switch typ {
		case "moov", "moof":
			if boxSize-hdr > maxBoxBody {
				return 0, errBadFile
			}
			body := make([]byte, boxSize-hdr)
			if _, err := r.ReadAt(body, off+hdr); err != nil {
				return 0, err
			}
			if typ == "moov" {
				readScales(body, scales)
			} else {
				pending = moofEnd(body, scales)
			}
		case "mdat":
			end = max(end, pending)
		}
		off += boxSize
	}
	return end, nil
}

// children calls f with each box in b (type, body) until f returns false
// or the boxes stop making sense.
func children(b []byte, f func(typ string, body []byte)) {
	for len(b) >= 8 {
		n := binary.BigEndian.Uint32(b)
		if n < 8 || uint64(n) > uint64(len(b)) {
			return
		}
		f(string(b[4:8]), b[8:n])
		b = b[n:]
	}
}

// readScales fills the time scale of each track of a moov.
func readScales(moov []byte, scales map[uint32]uint32) {
	children(moov, func(typ string, trak []byte) {
		if typ != "trak" {
			return
		}
		var id, scale uint32
		children(trak, func(typ string, b []byte) {
			switch typ {
			case "tkhd": // version, flags, [created, modified: 4 or 8 each], track ID
				if len(b) >= 4 {
					at := 4 + 8
					if b[0] == 1 {
						at = 4 + 16
					}
					if len(b) >= at+4 {
						id = binary.BigEndian.Uint32(b[at:])
					}
				}
			case "mdia":
				children(b, func(typ string, b []byte) {
					if typ == "mdhd" && len(b) >= 4 {
						at := 4 + 8
						if b[0] == 1 {
							at = 4 + 16
						}
						if len(b) >= at+4 {
							scale = binary.BigEndian.Uint32(b[at:])
						}
					}
				})
			}
		})
		if id != 0 && scale != 0 {
			scales[id] = scale
		}
	})
}

// moofEnd is the latest end of a track fragment in a moof.
func moofEnd(moof []byte, scales map[uint32]uint32) time.Duration {
	var end time.Duration
	children(moof, func(typ string, traf []byte) {
		if typ != "traf" {
			return
		}
		var id, defDur uint32
		var base, total uint64
		children(traf, func(typ string, b []byte) {
			if len(b) < 8 {
				return
			}
			flags := binary.BigEndian.Uint32(b) & 0xffffff
			switch typ {
			case "tfhd":
				id = binary.BigEndian.Uint32(b[4:])
				at := 8
				for _, f := range []struct {
					bit uint32
					n   int
				}{{0x01, 8}, {0x02, 4}} {
					if flags&f.bit != 0 {
						at += f.n
					}
				}
				if flags&0x08 != 0 && len(b) >= at+4 {
					defDur = binary.BigEndian.Uint32(b[at:])
				}
			case "tfdt":
				if b[0] == 1 && len(b) >= 12 {
					base = binary.BigEndian.Uint64(b[4:])
				} else {
					base = uint64(binary.BigEndian.Uint32(b[4:]))
				}
			case "trun":
				total += trunDuration(b, flags, defDur)
			}
		})
		if s := scales[id]; s != 0 {
			end = max(end, time.Duration(float64(base+total)/float64(s)*float64(time.Second)))
		}
	})
	return end
}

// trunDuration sums a trun's sample durations (def when it has none).
func trunDuration(b []byte, flags, def uint32) uint64 {
	count := uint64(binary.BigEndian.Uint32(b[4:]))
	at := 8
	if flags&0x01 != 0 {
		at += 4
	}
	if flags&0x04 != 0 {
		at += 4
	}
	per := 0
	for _, bit := range []uint32{0x100, 0x200, 0x400, 0x800} {
		if flags&bit != 0 {
			per += 4
		}
	}
	if flags&0x100 == 0 {
		return count * uint64(def)
	}
	var total uint64
	for i := uint64(0); i < count && at+4 <= len(b); i++ {
		total += uint64(binary.BigEndian.Uint32(b[at:]))
		at += per
	}
	return total
}

// webmDuration reads the Duration Parley's WebM muxer fills in when it
// closes a file (0 when it never did: the file was cut short).
func webmDuration(r io.ReaderAt, size int64) (time.Duration, error) {
	head := make([]byte, min(size, 4096))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	if !bytes.HasPrefix(head, []byte{0x1a, 0x45, 0xdf, 0xa3}) {
		return 0, errBadFile
	}
	i := bytes.Index(head, []byte{0x44, 0x89, 0x88})
	if i < 0 || i+11 > len(head) {
		return 0, nil
	}
	ms := math.Float64frombits(binary.BigEndian.Uint64(head[i+3:]))
	if ms == durationMark || !(ms > 0) || ms > float64(math.MaxInt64/int64(time.Millisecond)) {
		return 0, nil
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}
