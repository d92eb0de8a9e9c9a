package record

import (
	"fmt"
	"io"
)

// newMuxer makes the muxer of a format.
func newMuxer(format string, w io.Writer, tracks []Track) (muxer, error) {
	switch format {
	case FormatMP4:
		return newMP4Muxer(w, tracks)
	case FormatWebM:
		return newWebMMuxer(w, tracks)
	}
	return nil, fmt.Errorf("format %q is not mp4 or webm", format)
}

// carries reports whether a format can hold a codec.
func carries(format, codec string) bool {
	if format == FormatWebM {
		_, ok := webmCodecs[codec]
		return ok
	}
	return mp4Codecs[codec]
}
