package tap

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpav1"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpvp8"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpvp9"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	"github.com/pion/rtp"

	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/transcode"
)

// gopLimit bounds the frames kept since the last keyframe for late
// readers; a longer GOP is not kept (they wait for the next keyframe).
const gopLimit = 400

// tap is one stream's shared reading.
type tap struct {
	h     *Hub
	key   string
	ready chan struct{} // closed at the first keyframe (first frame without video)
	ended chan struct{} // closed when a track ended: the publisher went
	endMu sync.Once
	refs  int // guarded by Hub.mu

	subs []*sfu.Subscription
	aac  *transcode.OpusToAAC
	// keyEvery is the shortest KeyframeInterval of the readers (0: none).
	keyEvery atomic.Int64
	quit     chan struct{} // closed by stop: ends the watchers

	mu      sync.Mutex
	tracks  []Track
	video   int // index of the video track, -1 without
	started bool
	start   time.Time
	clocks  []clock
	// shared: every track is on its publisher's shared RTP clock
	// (sfu.TrackInfo.SharedClock) and is lined up by timestamp; refTS is
	// the video's first timestamp. Otherwise tracks are lined up by
	// arrival against videoBase, the least (arrival since start - pts)
	// of the video's frames: how early its timeline began, which the
	// SFU's replay of an old keyframe to a new subscription hides.
	shared    bool
	refTS     uint32
	videoBase time.Duration
	haveBase  bool
	gop       []Frame
	gopValid  bool
	readers   map[*Reader]struct{}
}

func (t *tap) isEnded() bool {
	select {
	case <-t.ended:
		return true
	default:
		return false
	}
}

func (t *tap) end() { t.endMu.Do(func() { close(t.ended) }) }

// start subscribes to the chosen tracks; called with h.mu held.
func (h *Hub) start(room *sfu.Room, key string, chosen []sfu.TrackInfo, aac bool) (*tap, error) {
	t := &tap{h: h, key: key, ready: make(chan struct{}), ended: make(chan struct{}), quit: make(chan struct{}),
		video: -1, readers: map[*Reader]struct{}{}}
	var feeds []*feed
	t.shared = len(chosen) > 1
	for _, ti := range chosen {
		t.shared = t.shared && ti.SharedClock && ti.Publisher == chosen[0].Publisher
	}
	for i, ti := range chosen {
		tr := Track{ID: ti.ID, Kind: ti.Kind, Codec: codecOf(ti.Codec), ClockRate: 90000, Publisher: ti.Publisher}
		f := &feed{t: t, idx: i, codec: tr.Codec}
		switch tr.Codec {
		case "H264":
			f.h264 = &rtph264.Decoder{PacketizationMode: 1}
			if err := f.h264.Init(); err != nil {
				return nil, fmt.Errorf("tap: H.264 decoder: %w", err)
			}
		case "H265":
			f.h265 = &rtph265.Decoder{}
			if err := f.h265.Init(); err != nil {
				return nil, fmt.Errorf("tap: H.265 decoder: %w", err)
			}
		case "VP8":
			f.vp8 = &rtpvp8.Decoder{}
			if err := f.vp8.Init(); err != nil {
				return nil, fmt.Errorf("tap: VP8 decoder: %w", err)
			}
		case "VP9":
			f.vp9 = &rtpvp9.Decoder{}
			if err := f.vp9.Init(); err != nil {
				return nil, fmt.Errorf("tap: VP9 decoder: %w", err)
			}
		case "AV1":
			f.av1 = &rtpav1.Decoder{}
			if err := f.av1.Init(); err != nil {
				return nil, fmt.Errorf("tap: AV1 decoder: %w", err)
			}
		case "Opus":
			tr.ClockRate, tr.Channels = 48000, 2
		case "PCMU", "PCMA":
			tr.ClockRate, tr.Channels = 8000, 1
		}
		if tr.Kind == "video" {
			t.video = i
		}
		if tr.Codec == "Opus" && aac {
			asc, err := (&mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 2}).Marshal()
			if err != nil {
				return nil, fmt.Errorf("tap: AAC config: %w", err)
			}
			tr.Codec, tr.Params = "AAC", [][]byte{asc}
			idx := i
			t.aac, err = transcode.StartOpusToAAC(h.ctx, transcode.OpusConfig{Channels: 2, FFmpeg: h.cfg.FFmpeg,
				Logger:  h.log.With("stream", room.Name()),
				OnFrame: func(au []byte, ts uint32) { t.emit(idx, ts, [][]byte{bytes.Clone(au)}, true) }})
			if err != nil {
				return nil, fmt.Errorf("tap: %w", err)
			}
			f.toAAC = t.aac
		}
		t.tracks = append(t.tracks, tr)
		t.clocks = append(t.clocks, clock{rate: int64(tr.ClockRate)})
		feeds = append(feeds, f)
	}
	for i, f := range feeds {
		sub, err := room.Subscribe(chosen[i].ID, f, sfu.SinkOptions{SSRC: uint32(i + 1), Sticky: true})
		if err != nil {
			t.stop()
			return nil, fmt.Errorf("tap: subscribing to %s: %w", chosen[i].ID, err)
		}
		t.subs = append(t.subs, sub)
		f.sub.Store(sub)
		h.wg.Add(1)
		go func() { // the tap ends with any of its tracks
			defer h.wg.Done()
			select {
			case <-sub.Done():
				t.end()
			case <-t.quit:
			case <-h.ctx.Done():
				t.end()
			}
		}()
	}
	return t, nil
}

// setKeyEvery recomputes the shortest keyframe interval the readers
// ask; with t.mu held.
func (t *tap) setKeyEvery() {
	var every time.Duration
	for r := range t.readers {
		if r.keyEvery > 0 && (every == 0 || r.keyEvery < every) {
			every = r.keyEvery
		}
	}
	t.keyEvery.Store(int64(every))
}

// stop releases the subscriptions and the transcoder.
func (t *tap) stop() {
	close(t.quit)
	for _, s := range t.subs {
		s.Close()
	}
	if t.aac != nil {
		t.aac.Close()
	}
	t.end()
}

// emit hands one access unit to every reader (a subscription's goroutine
// or the transcoder's).
func (t *tap) emit(idx int, ts uint32, au [][]byte, key bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	isVideo := idx == t.video
	if !t.started {
		if t.video >= 0 && !(isVideo && key) {
			return // everything starts with the picture
		}
		t.started, t.start = true, time.Now()
		close(t.ready)
	}
	pts, ok := t.place(idx, ts, time.Now())
	if !ok {
		return // from before the first picture
	}
	f := Frame{Track: idx, PTS: pts, NTP: t.start.Add(pts), Key: key || !isVideo, AU: au}
	switch {
	case isVideo && key:
		t.gop, t.gopValid = append(t.gop[:0], f), true
	case t.gopValid && t.video >= 0 && len(t.gop) < gopLimit:
		t.gop = append(t.gop, f)
	default:
		t.gop, t.gopValid = t.gop[:0], false
	}
	for r := range t.readers {
		t.deliver(r, f)
	}
}

// deliver queues f for r without blocking; with t.mu held. A full queue
// drops to the next keyframe.
func (t *tap) deliver(r *Reader, f Frame) {
	if r.waitKey {
		if f.Track != t.video || !f.Key {
			r.dropped.Add(1)
			return
		}
		r.waitKey = false
	}
	select {
	case r.q <- f:
		r.frames.Add(1)
	default:
		r.dropped.Add(1)
		r.waitKey = t.video >= 0
	}
}

// setParams records a video track's parameter sets, before the keyframe
// that carries them is emitted.
func (t *tap) setParams(idx int, params [][]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tracks[idx].Params = params // readers keep the slice they copied
}

// feed is the sfu.Sink of one track: it depacketizes into access units.
type feed struct {
	t       *tap
	idx     int
	codec   string
	h264    *rtph264.Decoder
	h265    *rtph265.Decoder
	vp8     *rtpvp8.Decoder
	vp9     *rtpvp9.Decoder
	av1     *rtpav1.Decoder
	toAAC   *transcode.OpusToAAC
	haveKey bool // a keyframe with its parameters went out

	sub     atomic.Pointer[sfu.Subscription] // set once subscribed (WriteRTP may run before)
	lastKey time.Time                        // the last keyframe, or the last request for one
}

// keyframeDue asks the publisher for a keyframe when the video went the
// readers' shortest KeyframeInterval without one (and as often while
// none comes): a browser sends one only when asked, and HLS segments and
// recording files start at keyframes. Publishers that cannot be asked
// (RTMP encoders, cameras) keep their own interval.
func (f *feed) keyframeDue(key bool) {
	every := time.Duration(f.t.keyEvery.Load())
	now := time.Now()
	if key || f.lastKey.IsZero() {
		f.lastKey = now
		return
	}
	sub := f.sub.Load()
	if every <= 0 || now.Sub(f.lastKey) < every || sub == nil {
		return
	}
	f.lastKey = now
	sub.RequestKeyframe()
}

// WriteRTP runs on the subscription's goroutine.
func (f *feed) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	n := len(payload)
	switch f.codec {
	case "Opus":
		if f.toAAC != nil {
			f.toAAC.Write(payload, h.Timestamp)
			return n, nil
		}
		fallthrough
	case "PCMU", "PCMA":
		f.t.emit(f.idx, h.Timestamp, [][]byte{bytes.Clone(payload)}, true)
		return n, nil
	}
	// The decoders keep fragments of an unfinished access unit: the
	// payload must outlive this call.
	pkt := &rtp.Packet{Header: *h, Payload: bytes.Clone(payload)}
	var au [][]byte
	var err error
	switch f.codec {
	case "H264":
		au, err = f.h264.Decode(pkt)
	case "H265":
		au, err = f.h265.Decode(pkt)
	case "AV1":
		au, err = f.av1.Decode(pkt)
	case "VP8", "VP9":
		var frame []byte
		if f.codec == "VP8" {
			frame, err = f.vp8.Decode(pkt)
		} else {
			frame, err = f.vp9.Decode(pkt)
		}
		au = [][]byte{frame}
	}
	if err != nil {
		if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph265.ErrMorePacketsNeeded) &&
			!errors.Is(err, rtpvp8.ErrMorePacketsNeeded) && !errors.Is(err, rtpvp9.ErrMorePacketsNeeded) &&
			!errors.Is(err, rtpav1.ErrMorePacketsNeeded) {
			f.haveKey = false // a loss: the next keyframe repairs it
		}
		return n, nil
	}
	key, params := f.inspect(au)
	f.keyframeDue(key)
	if key && params != nil {
		f.t.setParams(f.idx, params)
		f.haveKey = true
	}
	if !f.haveKey {
		return n, nil
	}
	f.t.emit(f.idx, h.Timestamp, au, key)
	return n, nil
}

// inspect tells whether au is a random access point and returns the
// codec parameters it carries (nil when a needed one is missing).
func (f *feed) inspect(au [][]byte) (key bool, params [][]byte) {
	switch f.codec {
	case "H264":
		if !h264.IsRandomAccess(au) {
			return false, nil
		}
		sps, pps := H264ParamSets(au)
		if sps == nil || pps == nil {
			return true, f.t.known(f.idx, 2)
		}
		return true, [][]byte{sps, pps}
	case "H265":
		if !h265.IsRandomAccess(au) {
			return false, nil
		}
		var vps, sps, pps []byte
		for _, n := range au {
			switch h265.NALUType((n[0] >> 1) & 0x3f) {
			case h265.NALUType_VPS_NUT:
				vps = n
			case h265.NALUType_SPS_NUT:
				sps = n
			case h265.NALUType_PPS_NUT:
				pps = n
			}
		}
		if vps == nil || sps == nil || pps == nil {
			return true, f.t.known(f.idx, 3)
		}
		return true, [][]byte{vps, sps, pps}
	case "AV1":
		if !av1.IsRandomAccess2(au) {
			return false, nil
		}
		for _, o := range au {
			var oh av1.OBUHeader
			if oh.Unmarshal(o) == nil && oh.Type == av1.OBUTypeSequenceHeader {
				return true, [][]byte{o}
			}
		}
		return true, f.t.known(f.idx, 1)
	case "VP9":
		if len(au[0]) == 0 || !vp9.IsRandomAccess(au[0]) {
			return false, nil
		}
		return true, [][]byte{}
	case "VP8":
		if len(au[0]) == 0 || au[0][0]&1 != 0 {
			return false, nil
		}
		return true, [][]byte{}
	}
	return false, nil
}

// known returns a track's parameters when it has n of them already (a
// keyframe that repeats none), else nil.
func (t *tap) known(idx, n int) [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.tracks[idx].Params; len(p) == n {
		return p
	}
	return nil
}

// H264ParamSets returns the SPS and PPS an H.264 access unit carries.
func H264ParamSets(au [][]byte) (sps, pps []byte) {
	for _, n := range au {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	return sps, pps
}
