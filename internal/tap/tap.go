// Package tap turns a live stream's RTP tracks into timestamped access
// units for the sinks that are files or other protocols rather than RTP:
// LL-HLS, recording, restreaming and RTMP readers. One tap per stream
// (and audio form) is shared by all its readers: the SFU subscriptions,
// the depacketizers and the Opus to AAC transcoder run once however many
// read. Each reader has its own bounded queue, so a slow one (a full disk,
// a far destination) skips to the next keyframe without slowing others.
package tap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/sfu"
)

// Track is one track of a stream as the tap delivers it.
type Track struct {
	ID    string // sfu.TrackInfo.ID
	Kind  string // "video" or "audio"
	Codec string // H264, H265, VP8, VP9, AV1, Opus, AAC, PCMU, PCMA
	// ClockRate of the source's RTP timestamps (90000, 48000, 8000).
	ClockRate int
	Channels  int // audio
	// Params are the codec's configuration as of the reader's first
	// frame: H264 SPS, PPS; H265 VPS, SPS, PPS; AV1 the sequence header
	// OBU; AAC the AudioSpecificConfig. Later changes come in-band.
	Params [][]byte
	// Publisher is the track's publisher in its room.
	Publisher string
}

// Frame is one access unit of one track. It is shared by every reader of
// the tap: read-only.
type Frame struct {
	Track int           // index into Reader.Tracks
	PTS   time.Duration // one clock for all tracks of a tap; subtract a reader's first
	NTP   time.Time     // wall clock of the frame (its arrival, for the first)
	Key   bool          // video: a random access point; audio: always
	// AU holds H264/H265 NAL units (no start codes), the OBUs of an AV1
	// temporal unit, or one element: a VP8/VP9 frame, an Opus packet, an
	// AAC access unit, G.711 samples.
	AU [][]byte
}

// Options choose what a reader gets.
type Options struct {
	// AAC delivers Opus audio as AAC-LC (48 kHz), transcoded once per
	// stream, for sinks that cannot carry Opus.
	AAC bool
	// Tracks limits the tap to these sfu.TrackInfo.IDs (one participant's
	// tracks in a group room); empty takes the room's first video and
	// first audio track of a codec the tap knows.
	Tracks []string
	// Queue bounds the frames waiting for this reader; 0 means 512.
	Queue int
	// KeyframeInterval asks the publisher for a keyframe whenever none
	// came for this long (HLS segments and recording files start at one;
	// browsers send one only when asked). The tap uses the shortest its
	// readers ask; 0 asks nothing. Publishers that cannot be asked (RTMP,
	// SRT, cameras) keep their own interval.
	KeyframeInterval time.Duration
	// Demand asks the hub's Config.Demand for a stream that is not live
	// here (a player: it may start on demand, or come from another
	// node); files and pushes do not ask.
	Demand bool
}

// ErrNotLive is returned by Open for a stream without a publisher or
// without a track the tap can read.
var ErrNotLive = errors.New("tap: stream is not live")

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("tap: reader closed")

// Config configures a Hub.
type Config struct {
	SFU *sfu.SFU
	// FFmpeg is the binary for Opus to AAC; "" finds "ffmpeg" on PATH.
	FFmpeg string
	// Demand, when set, is asked for a stream (sfu.Streams) that is not
	// live here by readers that ask (Options.Demand): an on-demand camera
	// or a relay from another node. It reports whether the stream is
	// here now.
	Demand func(ctx context.Context, stream string) bool
	Logger *slog.Logger
}

// Hub owns the taps of one server.
type Hub struct {
	cfg Config
	ctx context.Context
	log *slog.Logger
	wg  sync.WaitGroup

	mu   sync.Mutex
	taps map[string]*tap
}

// New returns a Hub whose taps live at most as long as ctx.
func New(ctx context.Context, cfg Config) *Hub {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{cfg: cfg, ctx: ctx, log: log, taps: map[string]*tap{}}
}

// Wait waits for the goroutines of taps that ended (after ctx ended or
// their readers closed).
func (h *Hub) Wait() { h.wg.Wait() }

// trackWait bounds how long Open waits for a stream's second track when
// only one is published yet: WebRTC publishers' tracks appear one by one
// as their first packets arrive.
const trackWait = time.Second

// Open starts reading a stream of namespace ns: it waits (until ctx ends)
// for the stream's first keyframe and returns a reader that starts there.
func (h *Hub) Open(ctx context.Context, ns sfu.Namespace, name string, opts Options) (*Reader, error) {
	room, ok := h.cfg.SFU.LookupRoom(ns, name)
	if (!ok || len(room.Tracks()) == 0) && opts.Demand && ns == sfu.Streams && h.cfg.Demand != nil && h.cfg.Demand(ctx, name) {
		room, ok = h.cfg.SFU.LookupRoom(ns, name)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotLive, name)
	}
	if len(opts.Tracks) == 0 && len(room.Tracks()) == 1 {
		wctx, cancel := context.WithTimeout(ctx, trackWait)
		room.WaitTracks(wctx, 2)
		cancel()
	}
	chosen := choose(room.Tracks(), opts.Tracks)
	if len(chosen) == 0 {
		why := "no track"
		if len(room.Tracks()) > 0 {
			why = "no readable track"
		}
		return nil, fmt.Errorf("%w: %s has %s", ErrNotLive, name, why)
	}
	ids := make([]string, len(chosen))
	for i, c := range chosen {
		ids[i] = c.ID
	}
	key := fmt.Sprintf("%d\x00%s\x00%t\x00%s", ns, name, opts.AAC, strings.Join(ids, "\x00"))

	h.mu.Lock()
	t := h.taps[key]
	if t == nil || t.isEnded() {
		var err error
		t, err = h.start(room, key, chosen, opts.AAC)
		if err != nil {
			h.mu.Unlock()
			return nil, err
		}
		h.taps[key] = t
	}
	t.refs++
	h.mu.Unlock()

	select {
	case <-t.ready:
	case <-t.ended:
		h.release(t)
		return nil, fmt.Errorf("%w: %s ended", ErrNotLive, name)
	case <-ctx.Done():
		h.release(t)
		return nil, fmt.Errorf("tap: waiting for a keyframe of %s: %w", name, ctx.Err())
	}
	q := opts.Queue
	if q <= 0 {
		q = 512
	}
	r := &Reader{t: t, q: make(chan Frame, q), closed: make(chan struct{}), keyEvery: opts.KeyframeInterval}
	t.mu.Lock()
	r.tracks = slices.Clone(t.tracks)
	for _, f := range t.gop {
		t.deliver(r, f)
	}
	t.readers[r] = struct{}{}
	t.setKeyEvery()
	t.mu.Unlock()
	return r, nil
}

// choose picks the tracks a tap reads.
func choose(all []sfu.TrackInfo, want []string) []sfu.TrackInfo {
	var out []sfu.TrackInfo
	if len(want) > 0 {
		for _, ti := range all {
			if slices.Contains(want, ti.ID) && codecOf(ti.Codec) != "" {
				out = append(out, ti)
			}
		}
		return out
	}
	var video, audio bool
	for _, ti := range all {
		c := codecOf(ti.Codec)
		switch {
		case c == "":
		case ti.Kind == "video" && !video:
			video = true
			out = append(out, ti)
		case ti.Kind == "audio" && !audio:
			audio = true
			out = append(out, ti)
		}
	}
	return out
}

// codecOf names a MIME type's codec as Track.Codec does; "" when the tap
// cannot read it.
func codecOf(mime string) string {
	_, c, _ := strings.Cut(mime, "/")
	switch c = strings.ToUpper(c); c {
	case "H264", "H265", "VP8", "VP9", "AV1", "PCMU", "PCMA":
		return c
	case "OPUS":
		return "Opus"
	}
	return ""
}

// release drops one reference to t and stops it with the last.
func (h *Hub) release(t *tap) {
	h.mu.Lock()
	t.refs--
	last := t.refs == 0
	if last && h.taps[t.key] == t {
		delete(h.taps, t.key)
	}
	h.mu.Unlock()
	if last {
		t.stop()
	}
}

// Reader is one consumer of a tap.
type Reader struct {
	t      *tap
	tracks []Track
	q      chan Frame
	closed chan struct{}
	once   sync.Once

	keyEvery time.Duration // Options.KeyframeInterval

	// guarded by t.mu
	waitKey bool

	frames, dropped atomic.Uint64
}

// Tracks describes the reader's tracks; Frame.Track indexes it.
func (r *Reader) Tracks() []Track { return r.tracks }

// Read returns the next frame; io.EOF once the stream's publisher went and
// every frame before was read.
func (r *Reader) Read(ctx context.Context) (Frame, error) {
	select {
	case f := <-r.q:
		return f, nil
	default:
	}
	select {
	case f := <-r.q:
		return f, nil
	case <-r.t.ended:
		select {
		case f := <-r.q:
			return f, nil
		default:
			return Frame{}, io.EOF
		}
	case <-r.closed:
		return Frame{}, ErrClosed
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// Close detaches the reader; the tap stops with its last reader.
func (r *Reader) Close() {
	r.once.Do(func() {
		close(r.closed)
		r.t.mu.Lock()
		delete(r.t.readers, r)
		r.t.setKeyEvery()
		r.t.mu.Unlock()
		r.t.h.release(r.t)
	})
}

// ReaderStats count a reader's frames.
type ReaderStats struct {
	Frames  uint64 // queued for the reader
	Dropped uint64 // dropped because its queue was full
}

// Stats returns the reader's counters.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{Frames: r.frames.Load(), Dropped: r.dropped.Load()}
}
