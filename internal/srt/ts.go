package srt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/parley/parley/internal/tap"
)

// tsPacketsPerSRT is how many 188-byte MPEG-TS packets go in one SRT
// payload (1316 bytes, what SRT players expect).
const tsPacketsPerSRT = 7

// ErrNoTSTrack means a stream has no track MPEG-TS can carry here.
var ErrNoTSTrack = errors.New("no H.264, H.265, Opus or AAC track")

// TSMuxer writes a tap reader's H.264/H.265 video and Opus/AAC audio as
// MPEG-TS: what SRT readers get and what a push to an SRT destination
// sends. Tracks MPEG-TS cannot carry (VP8, VP9, AV1, G.711) are left out.
type TSMuxer struct {
	r      Frames
	bw     *bufio.Writer
	w      *mpegts.Writer
	out    []*mpegts.Track // per tap track; nil when left out
	params [][][]byte      // per tap track: the parameter sets to repeat before keyframes lacking them
	origin time.Duration
	start  bool
}

// Frames is what a TSMuxer reads: a *tap.Reader (or frames a test makes).
type Frames interface {
	Tracks() []tap.Track
	Read(ctx context.Context) (tap.Frame, error)
}

// NewTSMuxer prepares the muxer; ErrNoTSTrack when nothing can be carried.
func NewTSMuxer(r Frames, w io.Writer) (*TSMuxer, error) {
	m := &TSMuxer{r: r, bw: bufio.NewWriterSize(w, tsPacketsPerSRT*188)}
	var tracks []*mpegts.Track
	for _, t := range r.Tracks() {
		c := tsCodec(t)
		var mt *mpegts.Track
		if c != nil {
			mt = &mpegts.Track{Codec: c}
			tracks = append(tracks, mt)
		}
		m.out, m.params = append(m.out, mt), append(m.params, t.Params)
	}
	if len(tracks) == 0 {
		return nil, ErrNoTSTrack
	}
	m.w = &mpegts.Writer{W: m.bw, Tracks: tracks}
	if err := m.w.Initialize(); err != nil {
		return nil, fmt.Errorf("MPEG-TS writer: %w", err)
	}
	return m, nil
}

// tsCodec is the MPEG-TS codec a tap track goes out as, nil for one
// left out.
func tsCodec(t tap.Track) mpegts.Codec {
	switch t.Codec {
	case "H264":
		return &mpegts.CodecH264{}
	case "H265":
		return &mpegts.CodecH265{}
	case "Opus":
		return &mpegts.CodecOpus{ChannelCount: t.Channels}
	case "AAC":
		var asc mpeg4audio.AudioSpecificConfig
		if len(t.Params) > 0 && asc.Unmarshal(t.Params[0]) == nil {
			return &mpegts.CodecMPEG4Audio{Config: asc}
		}
	}
	return nil
}

// TSCodecs names the tracks of ts a TSMuxer sends (before any
// connection is made: a push checks it can carry a stream first).
func TSCodecs(ts []tap.Track) []string {
	var names []string
	for _, t := range ts {
		if tsCodec(t) != nil {
			names = append(names, t.Codec)
		}
	}
	return names
}

// Tracks is how many tracks go out.
func (m *TSMuxer) Tracks() int { return len(m.w.Tracks) }

// Run writes frames until the stream ends (io.EOF), ctx ends or a write
// fails; each access unit is flushed at once.
func (m *TSMuxer) Run(ctx context.Context) error {
	for {
		f, err := m.r.Read(ctx)
		if err != nil {
			return err
		}
		t := m.out[f.Track]
		if t == nil {
			continue
		}
		if !m.start {
			m.origin, m.start = f.PTS, true
		}
		pts := int64(max(f.PTS-m.origin, 0)) * 90000 / int64(time.Second)
		switch t.Codec.(type) {
		case *mpegts.CodecH264:
			err = m.w.WriteH264(t, pts, pts, withParams(f, m.params[f.Track], h264Params))
		case *mpegts.CodecH265:
			err = m.w.WriteH265(t, pts, pts, withParams(f, m.params[f.Track], h265Params))
		case *mpegts.CodecOpus:
			err = m.w.WriteOpus(t, pts, f.AU)
		case *mpegts.CodecMPEG4Audio:
			err = m.w.WriteMPEG4Audio(t, pts, f.AU)
		}
		if err == nil {
			err = m.bw.Flush()
		}
		if err != nil {
			return fmt.Errorf("writing MPEG-TS: %w", err)
		}
	}
}

// withParams puts the track's parameter sets before a keyframe that
// lacks them, so a player can start on any keyframe.
func withParams(f tap.Frame, params [][]byte, has func([][]byte) bool) [][]byte {
	if !f.Key || len(params) == 0 || has(f.AU) {
		return f.AU
	}
	return append(append([][]byte(nil), params...), f.AU...)
}

func h264Params(au [][]byte) bool {
	sps, pps := tap.H264ParamSets(au)
	return sps != nil && pps != nil
}

func h265Params(au [][]byte) bool {
	for _, n := range au {
		if len(n) > 0 && h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_SPS_NUT {
			return true
		}
	}
	return false
}
