package record

import (
	"time"

	"github.com/parley/parley/internal/tap"
)

// Track is one track of a recorded stream, as the tap describes it.
type Track = tap.Track

// Frame is one access unit of a track, as the tap delivers it (shared:
// read only).
type Frame = tap.Frame

// muxer writes one file's container: WriteFrame buffers, and the muxer
// writes to its io.Writer (one write per fragment or cluster, at least
// once per flushEvery of media); Close writes what is left.
type muxer interface {
	WriteFrame(f Frame) error
	// Duration is the span of media written so far (the end of the last
	// written sample after the file's first).
	Duration() time.Duration
	Close() error
}

// flushEvery bounds the media a muxer holds before writing it: a killed
// process loses at most this much (plus the frame being assembled).
const flushEvery = time.Second

// Formats a recording can be written in.
const (
	FormatMP4  = "mp4"  // fragmented MP4: H.264, H.265, AV1, VP9 + Opus, AAC
	FormatWebM = "webm" // WebM: VP8, VP9 + Opus
)

// FormatFor is the format a stream with these tracks is recorded in when
// none is asked for: WebM when its video is VP8 (MP4 cannot carry it),
// else fragmented MP4.
func FormatFor(tracks []Track) string {
	for _, t := range tracks {
		if t.Kind == "video" && t.Codec == "VP8" {
			return FormatWebM
		}
	}
	return FormatMP4
}

// trackOf is f's track in a muxer's tracks (by input index), nil when it
// is not recorded or f is empty.
func trackOf[T any](tracks []*T, f Frame) *T {
	if f.Track < 0 || f.Track >= len(tracks) || len(f.AU) == 0 {
		return nil
	}
	return tracks[f.Track]
}

// opensFile reports whether f, of a video track or not, may be a file's
// first frame: a video keyframe, or any frame when no video is recorded.
func opensFile(videoRecorded, video bool, f Frame) bool {
	return f.Key && (video || !videoRecorded)
}

var _ Source = (*tap.Reader)(nil)
