package hls

import (
	"fmt"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
)

// writeFunc writes one frame (timestamp in the track's clock) to a muxer.
type writeFunc func(m *gohlslib.Muxer, t *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error

// hlsTrack is a tap track the muxer carries.
type hlsTrack struct {
	tap   int // index in the reader's Tracks()
	track *gohlslib.Track
	write writeFunc
}

// mapTracks chooses what HLS carries of a stream: its first video track
// (H.264, H.265, AV1, VP9) and first audio track (Opus, AAC). notes say
// what is left out; ErrUnsupported when nothing is left.
func mapTracks(tracks []tap.Track) (out []hlsTrack, notes []string, err error) {
	var video, audio bool
	var refused []string
	for i, t := range tracks {
		if (t.Kind == "video" && video) || (t.Kind == "audio" && audio) {
			notes = append(notes, fmt.Sprintf("a second %s track (%s) is not carried in HLS", t.Kind, t.Codec))
			continue
		}
		ht, why := mapTrack(t)
		if why != "" {
			refused = append(refused, why)
			continue
		}
		ht.tap = i
		out = append(out, ht)
		video = video || t.Kind == "video"
		audio = audio || t.Kind == "audio"
	}
	switch {
	case len(refused) > 0 && !video && !(audio && !hasKind(tracks, "video")):
		// No video where the stream has video (it would be sound only),
		// or nothing at all.
		return nil, nil, fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(refused, "; "))
	case len(out) == 0:
		return nil, nil, fmt.Errorf("%w: the stream has no track", ErrUnsupported)
	}
	for _, why := range refused {
		notes = append(notes, why+"; HLS plays without it")
	}
	return out, notes, nil
}

// Carries says what the HLS of a live stream with these tracks leaves
// out (notes), or why it cannot be served (ErrUnsupported), before any
// muxer runs: for the stream's status.
func Carries(tracks []sfu.TrackInfo) (notes []string, err error) {
	tt := make([]tap.Track, 0, len(tracks))
	for _, t := range tracks {
		_, codec, _ := strings.Cut(t.Codec, "/")               // a MIME type: video/H264
		tt = append(tt, tap.Track{Kind: t.Kind, Codec: codec}) // WebRTC tracks: no AAC, no parameters needed
	}
	_, notes, err = mapTracks(tt)
	return notes, err
}

func hasKind(tracks []tap.Track, kind string) bool {
	for _, t := range tracks {
		if t.Kind == kind {
			return true
		}
	}
	return false
}

func param(t tap.Track, i int) []byte {
	if i < len(t.Params) {
		return t.Params[i]
	}
	return nil
}

// mapTrack maps one tap track, or says in words why HLS cannot carry it.
func mapTrack(t tap.Track) (hlsTrack, string) {
	var c codecs.Codec
	var w writeFunc
	rate := 90000
	switch strings.ToUpper(t.Codec) {
	case "H264":
		c = &codecs.H264{SPS: param(t, 0), PPS: param(t, 1)}
		w = func(m *gohlslib.Muxer, tr *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error {
			return m.WriteH264(tr, ntp, pts, au)
		}
	case "H265":
		c = &codecs.H265{VPS: param(t, 0), SPS: param(t, 1), PPS: param(t, 2)}
		w = func(m *gohlslib.Muxer, tr *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error {
			return m.WriteH265(tr, ntp, pts, au)
		}
	case "AV1":
		c = &codecs.AV1{SequenceHeader: param(t, 0)}
		w = func(m *gohlslib.Muxer, tr *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error {
			return m.WriteAV1(tr, ntp, pts, au)
		}
	case "VP9":
		c = &codecs.VP9{} // size and profile come from the first keyframe
		w = func(m *gohlslib.Muxer, tr *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error {
			return m.WriteVP9(tr, ntp, pts, first(au))
		}
	case "OPUS":
		ch := t.Channels
		if ch <= 0 {
			ch = 2
		}
		c, rate = &codecs.Opus{ChannelCount: ch}, 48000
		w = func(m *gohlslib.Muxer, tr *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error {
			return m.WriteOpus(tr, ntp, pts, au)
		}
	case "AAC":
		var asc mpeg4audio.AudioSpecificConfig
		if err := asc.Unmarshal(param(t, 0)); err != nil {
			return hlsTrack{}, "the AAC track's configuration is unreadable (" + err.Error() + ")"
		}
		c, rate = &codecs.MPEG4Audio{Config: asc}, asc.SampleRate
		w = func(m *gohlslib.Muxer, tr *gohlslib.Track, ntp time.Time, pts int64, au [][]byte) error {
			return m.WriteMPEG4Audio(tr, ntp, pts, au)
		}
	case "VP8":
		return hlsTrack{}, "VP8 video cannot be carried in HLS (it needs H.264, H.265, AV1 or VP9: publish H.264)"
	case "PCMU", "PCMA":
		return hlsTrack{}, "G.711 audio (" + t.Codec + ") cannot be carried in HLS (it needs AAC or Opus)"
	default:
		return hlsTrack{}, fmt.Sprintf("%s %s cannot be carried in HLS", t.Codec, t.Kind)
	}
	return hlsTrack{track: &gohlslib.Track{Codec: c, ClockRate: rate}, write: w}, ""
}

func first(au [][]byte) []byte {
	if len(au) == 0 {
		return nil
	}
	return au[0]
}

// ticks converts a duration to a clock of rate Hz without overflowing.
func ticks(d time.Duration, rate int) int64 {
	s, r := d/time.Second, d%time.Second
	return int64(s)*int64(rate) + int64(r)*int64(rate)/int64(time.Second)
}
