package rtmp

import (
	"errors"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/parley/parley/internal/tap"
)

// ErrNoTrack means a stream has no track the RTMP connection can carry.
var ErrNoTrack = errors.New("no track RTMP can carry")

// TapWriter sends a tap reader's frames over an RTMP connection: a
// player's (play, classic RTMP: H.264, AAC, G.711) or a push
// destination's (internal/push, enhanced RTMP too: H.265, AV1, VP9).
// Tracks it cannot carry are left out; timestamps start at the first
// frame written.
type TapWriter struct {
	out     []*gortmplib.Track // per tap track; nil when left out
	tracks  []*gortmplib.Track
	codecs  []string
	w       *gortmplib.Writer
	origin  time.Duration
	started bool
}

// NewTapWriter maps a reader's tracks; ErrNoTrack when none can go.
func NewTapWriter(ts []tap.Track, enhanced bool) (*TapWriter, error) {
	tw := &TapWriter{out: make([]*gortmplib.Track, len(ts))}
	for i, t := range ts {
		if c := rtmpCodec(t, enhanced); c != nil {
			tw.out[i] = &gortmplib.Track{Codec: c}
			tw.tracks = append(tw.tracks, tw.out[i])
			tw.codecs = append(tw.codecs, t.Codec)
		}
	}
	if len(tw.tracks) == 0 {
		return nil, ErrNoTrack
	}
	return tw, nil
}

// Codecs names the tracks that go out ("H264", "AAC").
func (tw *TapWriter) Codecs() []string { return tw.codecs }

// Start sends the tracks' headers on c (accepting a player's play first).
func (tw *TapWriter) Start(c gortmplib.Conn) error {
	tw.w = &gortmplib.Writer{Conn: c, Tracks: tw.tracks}
	return tw.w.Initialize()
}

// Write sends a frame; frames of tracks left out are skipped.
func (tw *TapWriter) Write(f tap.Frame) error {
	if f.Track < 0 || f.Track >= len(tw.out) || tw.out[f.Track] == nil || len(f.AU) == 0 {
		return nil
	}
	t := tw.out[f.Track]
	if !tw.started {
		tw.origin, tw.started = f.PTS, true
	}
	pts := max(f.PTS-tw.origin, 0)
	switch t.Codec.(type) {
	case *codecs.H264:
		return tw.w.WriteH264(t, pts, pts, f.AU)
	case *codecs.H265:
		return tw.w.WriteH265(t, pts, pts, f.AU)
	case *codecs.AV1:
		return tw.w.WriteAV1(t, pts, f.AU)
	case *codecs.VP9:
		return tw.w.WriteVP9(t, pts, f.AU[0])
	case *codecs.MPEG4Audio:
		return tw.w.WriteMPEG4Audio(t, pts, f.AU[0])
	default:
		return tw.w.WriteG711(t, pts, f.AU[0])
	}
}

// rtmpCodec is the RTMP codec a tap track is sent as; nil for those the
// connection cannot carry. Enhanced RTMP adds H.265, AV1 and VP9 (which
// YouTube takes; a server without it refuses them).
func rtmpCodec(t tap.Track, enhanced bool) codecs.Codec {
	switch t.Codec {
	case "H264":
		if len(t.Params) >= 2 {
			return &codecs.H264{SPS: t.Params[0], PPS: t.Params[1]}
		}
	case "AAC":
		var asc mpeg4audio.AudioSpecificConfig
		if len(t.Params) >= 1 && asc.Unmarshal(t.Params[0]) == nil {
			return &codecs.MPEG4Audio{Config: &asc}
		}
	case "PCMU", "PCMA":
		return &codecs.G711{MULaw: t.Codec == "PCMU", ChannelCount: 1}
	}
	if !enhanced {
		return nil
	}
	switch t.Codec {
	case "H265":
		if len(t.Params) >= 3 {
			return &codecs.H265{VPS: t.Params[0], SPS: t.Params[1], PPS: t.Params[2]}
		}
	case "AV1":
		return &codecs.AV1{}
	case "VP9":
		return &codecs.VP9{}
	}
	return nil
}
