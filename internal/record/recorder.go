package record

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/tap"
)

// Source is one publisher's media as the recorder reads it (a tap reader
// behind a small adapter): Read ends with io.EOF when the publisher goes.
type Source interface { // *tap.Reader
	Tracks() []Track
	Read(ctx context.Context) (Frame, error)
	Stats() tap.ReaderStats
	Close()
}

// Modes of recording, after nginx-rtmp's record all / record keyframes.
const (
	ModeAll       = "all"       // every frame of every track
	ModeKeyframes = "keyframes" // video keyframes only (at most one per KeyframeInterval), no audio
)

// Options are how one stream (or room track) is recorded.
type Options struct {
	Format string // FormatMP4, FormatWebM, or "" for FormatFor the tracks
	Mode   string // ModeAll ("") or ModeKeyframes
	// KeyframeInterval is, in ModeKeyframes, the least media time between
	// two recorded keyframes (0: every keyframe).
	KeyframeInterval time.Duration
	// SegmentDuration and SegmentSize start a new file at the first video
	// keyframe past either (0: no limit).
	SegmentDuration time.Duration
	SegmentSize     int64
}

// Check reports what is wrong with the options.
func (o Options) Check() error {
	switch o.Format {
	case "", FormatMP4, FormatWebM:
	default:
		return fmt.Errorf("format %q is not mp4 or webm", o.Format)
	}
	switch o.Mode {
	case "", ModeAll, ModeKeyframes:
	default:
		return fmt.Errorf("mode %q is not all or keyframes", o.Mode)
	}
	if o.KeyframeInterval < 0 || o.SegmentDuration < 0 || o.SegmentSize < 0 {
		return errors.New("keyframe interval, segment duration and segment size must be >= 0")
	}
	return nil
}

// fileWriter is one file being written: the muxer over a counting file.
type fileWriter struct {
	f     *os.File
	path  string
	start time.Time     // wall clock of the first frame
	t0    time.Duration // PTS of the first frame
	size  int64
	mux   muxer
	err   error // the first write error
	// written is the media written so far (the muxer's Duration, in ns),
	// for listings while the file grows.
	written atomic.Int64
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("writing %s: %w", w.path, err)
	}
	return n, w.err
}

// WriteAt lets a muxer fill in a header field it knows only at the end.
func (w *fileWriter) WriteAt(p []byte, off int64) (int, error) { return w.f.WriteAt(p, off) }

// session writes one publisher's frames into one or more files.
type session struct {
	opts    Options
	dir     string // the stream's directory
	prefix  string // file name before the time
	tracks  []Track
	format  string
	cur     *fileWriter
	lastKey time.Duration // PTS of the last recorded keyframe (ModeKeyframes)
	haveKey bool
	log     *slog.Logger
	done    func(File) // a file was closed
	opened  func(path string, start time.Time, written *atomic.Int64)
}

// run records src until ctx ends or the publisher goes; it returns the
// error that stopped it (nil for those two).
func (s *session) run(ctx context.Context, src Source) error {
	s.tracks = cloneTracks(src.Tracks())
	if s.opts.Mode == ModeKeyframes {
		for i := range s.tracks {
			if s.tracks[i].Kind != "video" {
				s.tracks[i].Codec = "" // not recorded
			}
		}
	}
	s.format = s.opts.Format
	if s.format == "" {
		s.format = FormatFor(s.tracks)
	}
	if _, err := newMuxer(s.format, io.Discard, s.tracks); err != nil {
		return err // nothing this format can carry
	}
	if err := checkFormat(s.format, s.tracks); err != nil {
		return err
	}
	defer s.closeFile()
	for {
		f, err := src.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return s.drain(ctx, src)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading the stream: %w", err)
		}
		if err := s.write(f); err != nil {
			return err
		}
	}
}

// drain writes what was queued when the recording was stopped (a
// reader hands out queued frames before noticing its context ended).
func (s *session) drain(ctx context.Context, src Source) error {
	for range maxDrain {
		f, err := src.Read(ctx)
		if err != nil {
			return nil
		}
		if err := s.write(f); err != nil {
			return err
		}
	}
	return nil
}

// maxDrain bounds drain (a tap reader queues 512 frames).
const maxDrain = 1024

// ErrFormat is a format that cannot carry a stream's video.
var ErrFormat = errors.New("format cannot carry the video")

// checkFormat refuses a format that would drop the stream's video.
func checkFormat(format string, tracks []Track) error {
	for _, t := range tracks {
		if t.Kind == "video" && t.Codec != "" && format != "" && !carries(format, t.Codec) {
			return fmt.Errorf("%w: %s cannot carry this stream's %s video (MP4: H.264, H.265, AV1, VP9; WebM: VP8, VP9, AV1)", ErrFormat, format, t.Codec)
		}
	}
	return nil
}

func cloneTracks(ts []Track) []Track {
	out := make([]Track, len(ts))
	copy(out, ts)
	return out
}

func (s *session) write(f Frame) error {
	if f.Track < 0 || f.Track >= len(s.tracks) || s.tracks[f.Track].Codec == "" {
		return nil
	}
	t := s.tracks[f.Track]
	video := t.Kind == "video"
	if s.opts.Mode == ModeKeyframes {
		if !video || !f.Key || (s.haveKey && f.PTS-s.lastKey < s.opts.KeyframeInterval) {
			return nil
		}
		s.lastKey, s.haveKey = f.PTS, true
	}
	if s.cur != nil && video && f.Key {
		changed := s.newParams(f)
		if changed || s.full(f) {
			if err := s.closeFile(); err != nil {
				return err
			}
		}
	}
	if s.cur == nil {
		if !f.Key || (!video && s.hasVideo()) {
			return nil // files start at a video keyframe
		}
		if err := s.openFile(f); err != nil {
			return err
		}
	}
	if err := s.cur.mux.WriteFrame(f); err != nil {
		return err
	}
	s.cur.written.Store(int64(s.cur.mux.Duration()))
	return s.cur.err
}

func (s *session) hasVideo() bool {
	for _, t := range s.tracks {
		if t.Kind == "video" && t.Codec != "" {
			return true
		}
	}
	return false
}

// full reports whether the file reached a segment limit.
func (s *session) full(f Frame) bool {
	return (s.opts.SegmentDuration > 0 && f.PTS-s.cur.t0 >= s.opts.SegmentDuration) ||
		(s.opts.SegmentSize > 0 && s.cur.size >= s.opts.SegmentSize)
}

// newParams takes the in-band parameter sets of a keyframe; it reports
// whether they differ from the file's (a new resolution: a new file).
func (s *session) newParams(f Frame) bool {
	t := &s.tracks[f.Track]
	var want []byte // NAL unit types of the codec's parameter sets, in Params order
	var typ func(n []byte) byte
	switch t.Codec {
	case "H264":
		want, typ = []byte{7, 8}, func(n []byte) byte { return n[0] & 0x1f }
	case "H265":
		want, typ = []byte{32, 33, 34}, func(n []byte) byte { return n[0] >> 1 & 0x3f }
	default:
		return false
	}
	params := make([][]byte, len(want))
	copy(params, t.Params)
	changed := false
	for _, n := range f.AU {
		if len(n) == 0 {
			continue
		}
		for i, w := range want {
			if typ(n) == w && (i >= len(t.Params) || !bytes.Equal(n, t.Params[i])) {
				params[i], changed = bytes.Clone(n), true
			}
		}
	}
	if changed {
		t.Params = params
	}
	return changed
}

// openFile creates the next file, named for f's wall-clock time.
func (s *session) openFile(f Frame) error {
	at := f.NTP
	if at.IsZero() {
		at = time.Now()
	}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("creating %s: %w", s.dir, err)
	}
	base := s.prefix + "-" + at.UTC().Format(fileTime)
	var file *os.File
	var path string
	for i := 0; ; i++ {
		name := base + "." + s.format
		if i > 0 {
			name = fmt.Sprintf("%s-%d.%s", base, i, s.format)
		}
		path = filepath.Join(s.dir, name)
		var err error
		file, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || i >= 100 {
			return fmt.Errorf("creating %s: %w", path, err)
		}
	}
	w := &fileWriter{f: file, path: path, start: at, t0: f.PTS}
	m, err := newMuxer(s.format, w, s.tracks)
	if err != nil {
		_ = file.Close()
		_ = os.Remove(path)
		return err
	}
	w.mux = m
	s.cur = w
	if s.opened != nil {
		s.opened(path, at, &w.written)
	}
	s.log.Info("recording to a new file", "path", path)
	return nil
}

// closeFile finishes the current file, if any.
func (s *session) closeFile() error {
	w := s.cur
	if w == nil {
		return nil
	}
	s.cur = nil
	err := w.mux.Close()
	if err == nil {
		err = w.err
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing %s: %w", w.path, cerr)
	}
	if s.done != nil {
		s.done(File{Path: w.path, Start: w.start, Duration: w.mux.Duration(), Size: w.size, Format: s.format})
	}
	return err
}

// fileTime is the UTC time in file names: sortable, no colons.
const fileTime = "2006-01-02T15-04-05.000Z"

// Recorder records one stream (or one room track) through every publish
// of it: a new file at each publish, until Stop. It stops by itself when
// a file cannot be written (Status says why); the stream is not touched.
type Recorder struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	status Status
	src    Source          // being read, nil between publishes
	past   tap.ReaderStats // of the sources read before
}

// Status is a Recorder's state for the API.
type Status struct {
	State string    `json:"state"` // waiting (for a publisher), recording, failed, stopped
	Error string    `json:"error,omitempty"`
	File  string    `json:"file,omitempty"` // being written
	Since time.Time `json:"since"`
	// Frames the recorder was handed and Dropped because it fell behind
	// (its queue was full), over every publish it recorded.
	Frames  uint64 `json:"frames"`
	Dropped uint64 `json:"dropped"`
}

// Recorder states.
const (
	StateWaiting   = "waiting"
	StateRecording = "recording"
	StateFailed    = "failed"
	StateStopped   = "stopped"
)

// recorderConfig is what a Recorder needs from its Manager.
type recorderConfig struct {
	name   string
	dir    string
	prefix string
	opts   Options
	// open opens the stream's next publisher; it blocks until one is
	// live or ctx ends.
	open func(ctx context.Context) (Source, error)
	// once: record one publish only (the first).
	once   bool
	log    *slog.Logger
	opened func(path string, start time.Time, written *atomic.Int64) // a file was created; start: its first frame; written: its media so far (ns)
	done   func(File)                                                // a file was finished
	end    func(*Recorder)                                           // the recorder ended by itself
}

func startRecorder(ctx context.Context, cfg recorderConfig) *Recorder {
	ctx, cancel := context.WithCancel(ctx)
	r := &Recorder{name: cfg.name, cancel: cancel, done: make(chan struct{}), status: Status{State: StateWaiting, Since: time.Now()}}
	go r.run(ctx, cfg)
	return r
}

func (r *Recorder) setStatus(state, err, file string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = Status{State: state, Error: err, File: file, Since: time.Now()}
}

// reading sets the source being read (nil: done with it).
func (r *Recorder) reading(src Source) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.src != nil {
		st := r.src.Stats()
		r.past.Frames += st.Frames
		r.past.Dropped += st.Dropped
	}
	r.src = src
}

// Status reports the recorder's state.
func (r *Recorder) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	st.Frames, st.Dropped = r.past.Frames, r.past.Dropped
	if r.src != nil {
		now := r.src.Stats()
		st.Frames += now.Frames
		st.Dropped += now.Dropped
	}
	return st
}

// Done closes when the recorder has ended.
func (r *Recorder) Done() <-chan struct{} { return r.done }

// Stop ends the recording (the open file is finished) and waits.
func (r *Recorder) Stop() {
	r.cancel()
	<-r.done
}

func (r *Recorder) run(ctx context.Context, cfg recorderConfig) {
	defer close(r.done)
	log := cfg.log.With("recording", cfg.name)
	for ctx.Err() == nil {
		r.setStatus(StateWaiting, "", "")
		src, err := cfg.open(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.setStatus(StateFailed, err.Error(), "")
				log.Warn("recording stopped", "err", err)
				cfg.end(r)
			}
			return
		}
		s := &session{opts: cfg.opts, dir: cfg.dir, prefix: cfg.prefix, log: log, done: cfg.done,
			opened: func(p string, start time.Time, written *atomic.Int64) {
				if cfg.opened != nil {
					cfg.opened(p, start, written)
				}
				r.setStatus(StateRecording, "", p)
			}}
		r.reading(src)
		err = s.run(ctx, src)
		r.reading(nil)
		src.Close()
		if err != nil {
			r.setStatus(StateFailed, err.Error(), "")
			log.Warn("recording stopped: the stream stays live", "err", err)
			cfg.end(r)
			return
		}
		if cfg.once {
			break
		}
	}
	r.setStatus(StateStopped, "", "")
	if ctx.Err() == nil {
		cfg.end(r)
	}
}
