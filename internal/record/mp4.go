package record

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4"
)

// mp4Muxer writes fragmented MP4: the init segment (ftyp, moov) when the
// first video keyframe comes, then a fragment (moof, mdat) of every track
// at each video keyframe at least half a second after the last, and at
// least once per flushEvery. A sample is written once the next one of its
// track gives its duration.
type mp4Muxer struct {
	w       io.Writer
	tracks  []*mp4Track // by input track index; nil: not recorded
	started bool
	video   bool          // a video track is recorded: files start at its keyframes
	t0      time.Duration // PTS of the file's first frame
	seq     uint32
	lastCut time.Duration // PTS (from t0) of the last fragment's end
	end     time.Duration // furthest sample end written
	buf     seekablebuffer.Buffer
}

type mp4Track struct {
	id        int
	in        Track
	video     bool
	timeScale uint32
	codec     mp4.Codec // set at the first keyframe when it needs the bitstream (VP9)
	dts264    *h264.DTSExtractor
	dts265    *h265.DTSExtractor
	pending   *fmp4.Sample // last sample, waiting for its duration
	pendDTS   int64        // its decode time
	lastDur   uint32
	samples   []*fmp4.Sample // this fragment's samples (durations known)
	base      int64          // decode time of samples[0]
	nextDTS   int64          // decode time after the last sample in samples
}

// mp4Codecs are what the MP4 recorder carries.
var mp4Codecs = map[string]bool{"H264": true, "H265": true, "AV1": true, "VP9": true, "Opus": true, "AAC": true}

func newMP4Muxer(w io.Writer, tracks []Track) (*mp4Muxer, error) {
	m := &mp4Muxer{w: w, tracks: make([]*mp4Track, len(tracks))}
	n := 0
	for i, t := range tracks {
		if !mp4Codecs[t.Codec] {
			continue
		}
		n++
		mt := &mp4Track{id: n, in: t, video: t.Kind == "video", timeScale: 90000}
		switch t.Codec {
		case "H264":
			if len(t.Params) < 2 {
				return nil, errors.New("H.264 track without SPS and PPS")
			}
			mt.codec = &mp4.CodecH264{SPS: t.Params[0], PPS: t.Params[1]}
			mt.dts264 = &h264.DTSExtractor{}
			mt.dts264.Initialize()
		case "H265":
			if len(t.Params) < 3 {
				return nil, errors.New("H.265 track without VPS, SPS and PPS")
			}
			mt.codec = &mp4.CodecH265{VPS: t.Params[0], SPS: t.Params[1], PPS: t.Params[2]}
			mt.dts265 = &h265.DTSExtractor{}
			mt.dts265.Initialize()
		case "AV1":
			if len(t.Params) < 1 {
				return nil, errors.New("AV1 track without a sequence header")
			}
			mt.codec = &mp4.CodecAV1{SequenceHeader: t.Params[0]}
		case "VP9": // from the first keyframe
		case "Opus":
			mt.timeScale = 48000
			mt.codec = &mp4.CodecOpus{ChannelCount: max(t.Channels, 1)}
		case "AAC":
			var asc mpeg4audio.AudioSpecificConfig
			if len(t.Params) < 1 {
				return nil, errors.New("AAC track without an AudioSpecificConfig")
			}
			if err := asc.Unmarshal(t.Params[0]); err != nil {
				return nil, fmt.Errorf("AAC AudioSpecificConfig: %w", err)
			}
			mt.timeScale = uint32(asc.SampleRate)
			mt.codec = &mp4.CodecMPEG4Audio{Config: asc}
		}
		m.tracks[i] = mt
		m.video = m.video || mt.video
	}
	if n == 0 {
		return nil, errors.New("no track MP4 can carry (H.264, H.265, AV1, VP9, Opus, AAC)")
	}
	return m, nil
}

func (m *mp4Muxer) WriteFrame(f Frame) error {
	t := trackOf(m.tracks, f)
	if t == nil {
		return nil
	}
	if !m.started {
		if !opensFile(m.video, t.video, f) {
			return nil
		}
		if err := m.start(f); err != nil {
			return err
		}
	}
	rel := f.PTS - m.t0
	if rel < 0 {
		return nil // audio from before the first keyframe
	}
	if t.video && f.Key && rel-m.lastCut >= flushEvery/2 {
		if err := m.flush(); err != nil {
			return err
		}
		m.lastCut = rel
	}
	s, dts, err := t.sample(f, rel)
	if err != nil {
		return err
	}
	if s == nil {
		return nil
	}
	if p := t.pending; p != nil {
		d := dts - t.pendDTS
		if d <= 0 {
			d = 1
		}
		p.Duration = uint32(min(d, 1<<31))
		t.lastDur = p.Duration
		t.push(p, t.pendDTS)
	}
	t.pending, t.pendDTS = s, dts
	if rel-m.lastCut >= flushEvery {
		if err := m.flush(); err != nil {
			return err
		}
		m.lastCut = rel
	}
	return nil
}

// start writes the init segment; f is the first video keyframe (or the
// first frame of an audio-only stream).
func (m *mp4Muxer) start(f Frame) error {
	var init fmp4.Init
	for _, t := range m.tracks {
		if t == nil {
			continue
		}
		if t.codec == nil { // VP9: its size and profile are in the keyframe
			if t != m.tracks[f.Track] {
				return errors.New("VP9 track: no keyframe to read its size from")
			}
			var h vp9.Header
			if err := h.Unmarshal(f.AU[0]); err != nil {
				return fmt.Errorf("VP9 keyframe header: %w", err)
			}
			c := &mp4.CodecVP9{Width: h.Width(), Height: h.Height(), Profile: h.Profile, BitDepth: 8, ChromaSubsampling: h.ChromaSubsampling()}
			if h.ColorConfig != nil {
				c.BitDepth, c.ColorRange = h.ColorConfig.BitDepth, h.ColorConfig.ColorRange
			}
			t.codec = c
		}
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: t.id, TimeScale: t.timeScale, Codec: t.codec})
	}
	m.buf.Reset()
	if err := init.Marshal(&m.buf); err != nil {
		return fmt.Errorf("mp4 init segment: %w", err)
	}
	if _, err := m.w.Write(m.buf.Bytes()); err != nil {
		return err
	}
	m.started, m.t0 = true, f.PTS
	return nil
}

// sample makes f's sample and its decode time in the track's time scale.
func (t *mp4Track) sample(f Frame, rel time.Duration) (*fmp4.Sample, int64, error) {
	pts := int64(rel) * int64(t.timeScale) / int64(time.Second)
	s := &fmp4.Sample{IsNonSyncSample: t.video && !f.Key}
	dts := pts
	var err error
	switch t.in.Codec {
	case "H264":
		if d, derr := t.dts264.Extract(f.AU, pts); derr == nil {
			dts = d
		} else if t.pending != nil {
			dts = max(t.pendDTS+1, min(pts, dts))
		}
		err = s.FillH264(int32(pts-dts), f.AU)
	case "H265":
		if d, derr := t.dts265.Extract(f.AU, pts); derr == nil {
			dts = d
		} else if t.pending != nil {
			dts = max(t.pendDTS+1, min(pts, dts))
		}
		err = s.FillH265(int32(pts-dts), f.AU)
	case "AV1":
		err = s.FillAV1(f.AU)
	default:
		s.Payload = f.AU[0]
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s sample: %w", t.in.Codec, err)
	}
	if t.pending != nil && dts <= t.pendDTS {
		dts = t.pendDTS + 1 // keep decode times increasing
	}
	return s, dts, nil
}

func (t *mp4Track) push(s *fmp4.Sample, dts int64) {
	if len(t.samples) == 0 {
		t.base = dts
	}
	t.samples = append(t.samples, s)
	t.nextDTS = dts + int64(s.Duration)
}

// flush writes the samples whose durations are known as one fragment.
func (m *mp4Muxer) flush() error {
	var part fmp4.Part
	for _, t := range m.tracks {
		if t == nil || len(t.samples) == 0 {
			continue
		}
		part.Tracks = append(part.Tracks, &fmp4.PartTrack{ID: t.id, BaseTime: uint64(max(t.base, 0)), Samples: t.samples})
		if e := time.Duration(t.nextDTS * int64(time.Second) / int64(t.timeScale)); e > m.end {
			m.end = e
		}
	}
	if len(part.Tracks) == 0 {
		return nil
	}
	m.seq++
	part.SequenceNumber = m.seq
	m.buf.Reset()
	if err := part.Marshal(&m.buf); err != nil {
		return fmt.Errorf("mp4 fragment: %w", err)
	}
	for _, t := range m.tracks {
		if t != nil {
			t.samples = t.samples[:0:0]
		}
	}
	_, err := m.w.Write(m.buf.Bytes())
	return err
}

func (m *mp4Muxer) Duration() time.Duration { return m.end }

// Close writes the held samples, each last one with its predecessor's
// duration.
func (m *mp4Muxer) Close() error {
	if !m.started {
		return nil
	}
	for _, t := range m.tracks {
		if t == nil || t.pending == nil {
			continue
		}
		d := t.lastDur
		if d == 0 {
			d = t.timeScale / 25
		}
		t.pending.Duration = d
		t.push(t.pending, t.pendDTS)
		t.pending = nil
	}
	return m.flush()
}
