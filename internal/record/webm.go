package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
)

// webmMuxer writes WebM as a live stream: the EBML header and a Segment
// of unknown size with Info and Tracks when the first video keyframe
// comes, then Clusters of unknown size, a new one at each video keyframe
// at least half a second after the last (and before the 16-bit block
// timecodes run out). Blocks are buffered and written at least once per
// flushEvery, so a killed process leaves a file players read to its end.
type webmMuxer struct {
	w       io.Writer
	tracks  []*webmTrack // by input track index; nil: not recorded
	started bool
	video   bool // a video track is recorded: files start at its keyframes
	t0      time.Duration
	cluster time.Duration // start of the open cluster (from t0), -1 before the first
	lastOut time.Duration // media time of the last write
	end     time.Duration
	buf     bytes.Buffer
	// durationAt is where the Info's Duration (a float64) is in the
	// file: Close fills it in when the writer is an io.WriterAt.
	durationAt int64
}

type webmTrack struct {
	last   time.Duration // the last frame's time, -1 before the first
	step   time.Duration // the last interval between frames
	number uint64
	in     Track
	video  bool
	entry  webm.TrackEntry
}

// webmCodecs maps the codecs WebM carries to their CodecID.
var webmCodecs = map[string]string{"VP8": "V_VP8", "VP9": "V_VP9", "AV1": "V_AV1", "Opus": "A_OPUS"}

// maxClusterSpan keeps block timecodes (int16 milliseconds) in range.
const maxClusterSpan = 30 * time.Second

func newWebMMuxer(w io.Writer, tracks []Track) (*webmMuxer, error) {
	m := &webmMuxer{w: w, tracks: make([]*webmTrack, len(tracks)), cluster: -1}
	var n uint64
	for i, t := range tracks {
		id, ok := webmCodecs[t.Codec]
		if !ok {
			continue
		}
		n++
		wt := &webmTrack{last: -1, number: n, in: t, video: t.Kind == "video"}
		wt.entry = webm.TrackEntry{TrackNumber: n, TrackUID: n, CodecID: id, Name: t.Kind}
		if wt.video {
			wt.entry.TrackType = 1
		} else {
			ch := max(t.Channels, 1)
			wt.entry.TrackType = 2
			wt.entry.Audio = &webm.Audio{SamplingFrequency: 48000, Channels: uint64(ch)}
			wt.entry.CodecPrivate = opusHead(ch)
			wt.entry.CodecDelay = 6500000 // 312 samples of pre-skip, in ns
			wt.entry.SeekPreRoll = 80000000
		}
		m.tracks[i] = wt
		m.video = m.video || wt.video
	}
	if n == 0 {
		return nil, errors.New("no track WebM can carry (VP8, VP9, AV1, Opus)")
	}
	return m, nil
}

// opusHead is the Opus identification header WebM wants as CodecPrivate
// (RFC 7845 §5.1): version 1, channels, 312 samples of pre-skip, 48 kHz,
// no gain, channel mapping 0.
func opusHead(channels int) []byte {
	b := []byte("OpusHead\x01\x00\x38\x01\x80\xbb\x00\x00\x00\x00\x00")
	b[9] = byte(channels)
	return b
}

func (m *webmMuxer) WriteFrame(f Frame) error {
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
		return nil
	}
	if m.cluster < 0 || rel-m.cluster >= maxClusterSpan || rel < m.cluster ||
		(t.video && f.Key && rel-m.cluster >= flushEvery/2) {
		m.openCluster(rel)
	}
	data := f.AU[0]
	if len(f.AU) > 1 { // AV1: the OBUs of the temporal unit, back to back
		data = bytes.Join(f.AU, nil)
	}
	m.simpleBlock(t.number, int16((rel-m.cluster)/time.Millisecond), f.Key || !t.video, data)
	if t.last >= 0 && rel > t.last {
		t.step = rel - t.last
	}
	t.last = rel
	m.end = max(m.end, rel+t.step)
	if rel-m.lastOut >= flushEvery {
		return m.flush(rel)
	}
	return nil
}

func (m *webmMuxer) start(f Frame) error {
	var header struct {
		Header  webm.EBMLHeader `ebml:"EBML"`
		Segment struct {
			Info   webm.Info   `ebml:"Info"`
			Tracks webm.Tracks `ebml:"Tracks"`
		} `ebml:"Segment,size=unknown"`
	}
	header.Header = *webm.DefaultEBMLHeader
	header.Segment.Info = webm.Info{TimecodeScale: 1000000, MuxingApp: "parley", WritingApp: "parley", Duration: durationMark}
	for _, t := range m.tracks {
		if t == nil {
			continue
		}
		if t.video {
			if t == m.tracks[f.Track] {
				w, h := videoSize(t.in.Codec, f.AU[0])
				t.entry.Video = &webm.Video{PixelWidth: uint64(w), PixelHeight: uint64(h)}
			} else {
				t.entry.Video = &webm.Video{}
			}
		}
		header.Segment.Tracks.TrackEntry = append(header.Segment.Tracks.TrackEntry, t.entry)
	}
	var b bytes.Buffer
	if err := ebml.Marshal(&header, &b); err != nil {
		return fmt.Errorf("webm header: %w", err)
	}
	mark := binary.BigEndian.AppendUint64([]byte{0x44, 0x89, 0x88}, math.Float64bits(durationMark))
	m.durationAt = int64(bytes.Index(b.Bytes(), mark)) + 3
	if _, err := m.w.Write(b.Bytes()); err != nil {
		return err
	}
	m.started, m.t0 = true, f.PTS
	return nil
}

// durationMark holds the place of the Duration until Close knows it (a
// killed process leaves it: players then read the file to its end).
const durationMark = 0.001

// videoSize reads the picture size from a VP8 or VP9 keyframe (0, 0 when
// it cannot: players read it from the bitstream too).
func videoSize(codec string, key []byte) (int, int) {
	switch codec {
	case "VP8": // RFC 6386 §9.1: 3-byte tag, start code, 14-bit sizes
		if len(key) >= 10 && key[0]&1 == 0 && key[3] == 0x9d && key[4] == 0x01 && key[5] == 0x2a {
			return int(binary.LittleEndian.Uint16(key[6:]) & 0x3fff), int(binary.LittleEndian.Uint16(key[8:]) & 0x3fff)
		}
	case "VP9":
		var h vp9.Header
		if h.Unmarshal(key) == nil && h.FrameSize != nil {
			return h.Width(), h.Height()
		}
	}
	return 0, 0
}

// openCluster starts a cluster at rel (an unknown-size Cluster element
// and its Timecode).
func (m *webmMuxer) openCluster(rel time.Duration) {
	m.cluster = rel
	m.buf.Write([]byte{0x1f, 0x43, 0xb6, 0x75, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	m.buf.Write([]byte{0xe7, 0x88})
	m.buf.Write(binary.BigEndian.AppendUint64(nil, uint64(rel/time.Millisecond)))
}

// simpleBlock appends a SimpleBlock (its size as an 8-byte vint).
func (m *webmMuxer) simpleBlock(track uint64, tc int16, key bool, data []byte) {
	size := uint64(1+2+1+len(data)) | 1<<56
	m.buf.WriteByte(0xa3)
	m.buf.Write(binary.BigEndian.AppendUint64(nil, size))
	m.buf.WriteByte(0x80 | byte(track))
	m.buf.Write(binary.BigEndian.AppendUint16(nil, uint16(tc)))
	flags := byte(0)
	if key {
		flags = 0x80
	}
	m.buf.WriteByte(flags)
	m.buf.Write(data)
}

func (m *webmMuxer) flush(rel time.Duration) error {
	m.lastOut = rel
	if m.buf.Len() == 0 {
		return nil
	}
	_, err := m.w.Write(m.buf.Bytes())
	m.buf.Reset()
	return err
}

func (m *webmMuxer) Duration() time.Duration { return m.end }

// Close writes the open cluster and, when it can, the duration.
func (m *webmMuxer) Close() error {
	if err := m.flush(m.end); err != nil || !m.started {
		return err
	}
	if wa, ok := m.w.(io.WriterAt); ok && m.durationAt >= 3 {
		ms := binary.BigEndian.AppendUint64(nil, math.Float64bits(float64(m.end)/float64(time.Millisecond)))
		if _, err := wa.WriteAt(ms, m.durationAt); err != nil {
			return fmt.Errorf("webm duration: %w", err)
		}
	}
	return nil
}
