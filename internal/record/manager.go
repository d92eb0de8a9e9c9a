// Package record writes streams and group-room tracks to files that
// survive a crash: fragmented MP4 (H.264, H.265, AV1, VP9 + Opus, AAC) or
// WebM (VP8, VP9 + Opus), each written as it goes, a fragment or cluster
// at least every second. A Manager runs one Recorder per recorded stream,
// lists, serves and deletes the files under its directory, and keeps them
// within an age and a total size.
package record

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the Manager (the API maps them to 409 and 404).
var (
	ErrRecording    = errors.New("already being recorded")
	ErrNotRecording = errors.New("not being recorded")
	ErrNotFound     = errors.New("no such recording")
	ErrBusy         = errors.New("the file is still being written")
)

// RoomsDir is the directory, under the record directory, of group-room
// recordings (a name no stream can have).
const RoomsDir = "@rooms"

// Config configures a Manager.
type Config struct {
	Dir string // where recordings go, created when first written
	// Open opens the stream's current publisher (tracks: nil for all, or
	// the IDs of the tracks to read). It answers ErrNotLive (wrapped or
	// not, as IsNotLive tells) when nobody publishes.
	Open func(ctx context.Context, stream string) (Source, error)
	// IsNotLive tells Open's "nobody publishes" error.
	IsNotLive func(error) bool
	// Retry is how often a recorder waiting for a publisher tries again
	// (0: 1 s).
	Retry time.Duration
	// MaxAge and MaxBytes bound the recordings kept (0: no bound); the
	// oldest finished files go first. Checked when a file is finished and
	// every CleanEvery (0: a minute).
	MaxAge     time.Duration
	MaxBytes   int64
	CleanEvery time.Duration
	// RoomTracks lists a group room's tracks (false: no such room), and
	// OpenTrack reads one of them; both nil: rooms are not recorded.
	RoomTracks func(room string) ([]RoomTrack, bool)
	OpenTrack  func(ctx context.Context, room, track string) (Source, error)
	// OnFile is told of each finished file (the on_record_done hook).
	OnFile func(File)
	Logger *slog.Logger
}

// File is one recording on disk.
type File struct {
	ID       string        `json:"id"` // path under the record directory, with slashes
	Stream   string        `json:"stream,omitempty"`
	Room     string        `json:"room,omitempty"`
	Path     string        `json:"path"`          // on the server
	URL      string        `json:"url,omitempty"` // download URL (set by the API)
	Format   string        `json:"format"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"duration"` // Duration in seconds
	Size     int64         `json:"size"`
	State    string        `json:"state"` // recording, done
}

// Manager owns the recorders and the record directory.
type Manager struct {
	cfg Config
	log *slog.Logger
	ctx context.Context

	mu        sync.Mutex
	recorders map[string]*Recorder // by stream
	rooms     map[string]*roomRecorder
	open      map[string]*atomic.Int64 // paths being written: their media so far (ns)
	durations map[string]cached        // durations read back, by path
	closed    bool

	cleanMu sync.Mutex // one retention pass at a time (the cleaner and finished files)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type cached struct {
	size int64
	mod  time.Time
	d    time.Duration
}

// New makes a Manager; nothing is written until a recording starts.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("record: no directory")
	}
	if cfg.Open == nil || cfg.IsNotLive == nil {
		return nil, errors.New("record: no Open")
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.CleanEvery <= 0 {
		cfg.CleanEvery = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "record"), recorders: map[string]*Recorder{}, rooms: map[string]*roomRecorder{},
		open: map[string]*atomic.Int64{}, durations: map[string]cached{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if cfg.MaxAge > 0 || cfg.MaxBytes > 0 {
		m.wg.Add(1)
		go m.cleaner()
	}
	return m, nil
}

// Close stops every recorder (their files are finished) and the cleaner.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	recs := make([]*Recorder, 0, len(m.recorders))
	for _, r := range m.recorders {
		if r != nil {
			recs = append(recs, r)
		}
	}
	rooms := make([]string, 0, len(m.rooms))
	for name := range m.rooms {
		rooms = append(rooms, name)
	}
	m.mu.Unlock()
	for _, r := range recs {
		r.Stop()
	}
	for _, name := range rooms {
		_ = m.StopRoom(name)
	}
	m.cancel()
	m.wg.Wait()
}

// Start records a stream. always keeps recording every publish of it
// until Stop (record: always); otherwise the stream must be live now
// (Open's error otherwise, within StartWait) and the recording goes on
// through republishes until Stop, or until a file cannot be written.
func (m *Manager) Start(stream string, opts Options, always bool) error {
	if err := checkName(stream); err != nil {
		return err
	}
	if err := opts.Check(); err != nil {
		return err
	}
	m.mu.Lock()
	if err := m.reserve(stream); err != nil {
		m.mu.Unlock()
		return err
	}
	m.mu.Unlock()
	var first Source
	if !always {
		ctx, cancel := context.WithTimeout(m.ctx, startWait)
		src, err := m.cfg.Open(ctx, stream)
		cancel()
		if err == nil {
			if err = checkFormat(opts.Format, src.Tracks()); err != nil {
				src.Close()
			}
		}
		if err != nil {
			m.mu.Lock()
			delete(m.recorders, stream)
			m.mu.Unlock()
			return err
		}
		first = src
	}
	open := func(ctx context.Context) (Source, error) {
		if first != nil {
			src := first
			first = nil
			return src, nil
		}
		return m.waitLive(ctx, stream)
	}
	r := startRecorder(m.ctx, recorderConfig{name: stream, dir: filepath.Join(m.cfg.Dir, stream), prefix: stream,
		opts: opts, open: open, log: m.log, done: m.fileDone, opened: m.fileOpened, end: func(*Recorder) {}})
	m.mu.Lock()
	cur, ok := m.recorders[stream]
	if m.closed || !ok || cur != nil { // stopped (or shut down) while starting
		m.mu.Unlock()
		r.Stop()
		return fmt.Errorf("stream %s: %w (stopped while starting)", stream, ErrNotRecording)
	}
	m.recorders[stream] = r
	m.mu.Unlock()
	return nil
}

// ErrName is a stream or room name that cannot be a directory name.
var ErrName = errors.New("cannot be recorded under that name")

// checkName refuses names that are not one plain directory name ("." and
// ".." are valid stream names, and would write outside the directory).
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || name == RoomsDir || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("%q: %w", name, ErrName)
	}
	return nil
}

// startWait bounds how long Start waits for a live stream's first
// keyframe.
const startWait = 10 * time.Second

// reserve holds a stream's place while its recorder starts (mu held).
func (m *Manager) reserve(stream string) error {
	if m.closed {
		return errors.New("record: shutting down")
	}
	if r, ok := m.recorders[stream]; ok && (r == nil || r.Status().State != StateFailed) {
		return fmt.Errorf("stream %s: %w", stream, ErrRecording)
	}
	m.recorders[stream] = nil
	return nil
}

// waitLive opens a stream as soon as it is live.
func (m *Manager) waitLive(ctx context.Context, stream string) (Source, error) {
	t := time.NewTicker(m.cfg.Retry)
	defer t.Stop()
	for {
		src, err := m.cfg.Open(ctx, stream)
		if err == nil || !m.cfg.IsNotLive(err) {
			return src, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Stop ends a stream's recording and waits for its file to be finished.
func (m *Manager) Stop(stream string) error {
	m.mu.Lock()
	r, ok := m.recorders[stream]
	delete(m.recorders, stream)
	m.mu.Unlock()
	if !ok || r == nil {
		return fmt.Errorf("stream %s: %w", stream, ErrNotRecording)
	}
	r.Stop()
	return nil
}

// Status reports a stream's recorder (false when it has none).
func (m *Manager) Status(stream string) (Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recorders[stream]
	if !ok {
		return Status{}, false
	}
	if r == nil {
		return Status{State: StateWaiting}, true
	}
	return r.Status(), true
}

// Recording is one recorder's state, for listings.
type Recording struct {
	Stream string `json:"stream,omitempty"`
	Room   string `json:"room,omitempty"`
	Status
}

// Recordings lists the recorders: streams by name, then rooms by name.
func (m *Manager) Recordings() []Recording {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Recording, 0, len(m.recorders))
	for name, r := range m.recorders {
		st := Status{State: StateWaiting}
		if r != nil {
			st = r.Status()
		}
		out = append(out, Recording{Stream: name, Status: st})
	}
	slices.SortFunc(out, func(a, b Recording) int { return strings.Compare(a.Stream, b.Stream) })
	return append(out, m.roomRecordings()...)
}

func (m *Manager) fileOpened(path string, _ time.Time, written *atomic.Int64) {
	m.mu.Lock()
	m.open[path] = written
	m.mu.Unlock()
}

// fileDone is told of each finished file.
func (m *Manager) fileDone(f File) {
	m.mu.Lock()
	delete(m.open, f.Path)
	if st, err := os.Stat(f.Path); err == nil {
		m.durations[f.Path] = cached{size: st.Size(), mod: st.ModTime(), d: f.Duration}
	}
	m.mu.Unlock()
	if info, err := m.describe(f.Path); err == nil {
		f = info
	}
	m.log.Info("recording finished", "path", f.Path, "duration", f.Duration, "size", f.Size)
	if m.cfg.OnFile != nil {
		m.cfg.OnFile(f)
	}
	m.clean()
}

// Files lists the recordings under the directory, oldest first.
func (m *Manager) Files() ([]File, error) {
	var out []File
	err := filepath.WalkDir(m.cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == m.cfg.Dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if rel, _ := filepath.Rel(m.cfg.Dir, path); d.IsDir() || !listed(rel) {
			return nil
		}
		f, err := m.describe(path)
		if err != nil {
			return nil // vanished or unreadable: not listed
		}
		out = append(out, f)
		return nil
	})
	slices.SortFunc(out, func(a, b File) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

func isMedia(path string) bool {
	ext := filepath.Ext(path)
	return ext == "."+FormatMP4 || ext == "."+FormatWebM
}

// isManifest reports whether a path is a room recording's manifest
// (<dir>/@rooms/<room>/<session>/manifest.json).
func isManifest(rel string) bool {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	return len(parts) == 4 && parts[0] == RoomsDir && parts[3] == ManifestName
}

// listed reports whether the listing shows a file (path relative to the
// record directory): recordings and room manifests.
func listed(rel string) bool { return isMedia(rel) || isManifest(rel) }

// describe reads one file's listing.
func (m *Manager) describe(path string) (File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return File{}, err
	}
	rel, err := filepath.Rel(m.cfg.Dir, path)
	if err != nil {
		return File{}, err
	}
	id := filepath.ToSlash(rel)
	f := File{ID: id, Path: path, Format: strings.TrimPrefix(filepath.Ext(path), "."), Size: st.Size(), State: "done"}
	parts := strings.Split(id, "/")
	if parts[0] == RoomsDir && len(parts) > 2 {
		f.Room = parts[1]
	} else if len(parts) > 1 {
		f.Stream = parts[0]
	}
	f.Start = startOf(filepath.Base(path), st.ModTime())
	m.mu.Lock()
	written, growing := m.open[path]
	if growing {
		f.State = StateRecording
	}
	if isManifest(id) {
		f.Format = "json"
		if m.roomActiveLocked(filepath.Dir(path)) {
			f.State = StateRecording
		}
		m.mu.Unlock()
		return f, nil
	}
	c, ok := m.durations[path]
	m.mu.Unlock()
	switch {
	case growing: // the recorder knows; a WebM's duration is in the file only once it is closed
		f.Duration = time.Duration(written.Load())
	case ok && c.size == st.Size() && c.mod.Equal(st.ModTime()):
		f.Duration = c.d
	default:
		if d, err := readDuration(path, f.Format); err == nil {
			f.Duration = d
			m.mu.Lock()
			m.durations[path] = cached{size: st.Size(), mod: st.ModTime(), d: d}
			m.mu.Unlock()
		}
	}
	f.Seconds = f.Duration.Seconds()
	return f, nil
}

// startOf reads the UTC time in a file name (<prefix>-<time>[-n].ext),
// or falls back to the modification time.
func startOf(name string, mod time.Time) time.Time {
	name = strings.TrimSuffix(name, filepath.Ext(name))
	for i := len(name) - len(fileTime); i >= 0; i-- {
		if t, err := time.Parse(fileTime, name[i:min(i+len(fileTime), len(name))]); err == nil {
			return t
		}
	}
	return mod.UTC()
}

func readDuration(path, format string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if format == FormatWebM {
		return webmDuration(f, st.Size())
	}
	return mp4Duration(f, st.Size())
}

// Lookup finds a recording by its ID (a path under the directory: no
// "..", no absolute paths, media files only).
func (m *Manager) Lookup(id string) (File, error) {
	if id == "" || !fs.ValidPath(id) || !listed(id) || strings.Contains(id, `\`) {
		return File{}, fmt.Errorf("%q: %w", id, ErrNotFound)
	}
	path := filepath.Join(m.cfg.Dir, filepath.FromSlash(id))
	f, err := m.describe(path)
	if err != nil {
		return File{}, fmt.Errorf("%q: %w", id, ErrNotFound)
	}
	return f, nil
}

// Delete removes a finished recording (ErrBusy while it is written).
func (m *Manager) Delete(id string) error {
	f, err := m.Lookup(id)
	if err != nil {
		return err
	}
	if f.State == StateRecording {
		return fmt.Errorf("%s: %w", id, ErrBusy)
	}
	return m.remove(f.Path)
}

func (m *Manager) remove(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("deleting %s: %w", path, err)
	}
	m.mu.Lock()
	delete(m.durations, path)
	m.mu.Unlock()
	// A finished room recording's manifest goes with its last file, and
	// empty directories go too (never the record directory itself).
	dir := filepath.Dir(path)
	if rel, err := filepath.Rel(m.cfg.Dir, filepath.Join(dir, ManifestName)); err == nil && isManifest(rel) && !m.roomActive(dir) {
		if left, err := os.ReadDir(dir); err == nil && len(left) == 1 && left[0].Name() == ManifestName {
			_ = os.Remove(filepath.Join(dir, ManifestName))
		}
	}
	for ; dir != m.cfg.Dir && strings.HasPrefix(dir, m.cfg.Dir); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// roomActive reports whether a room recording writes into dir.
func (m *Manager) roomActive(dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.roomActiveLocked(dir)
}

func (m *Manager) roomActiveLocked(dir string) bool {
	for _, rr := range m.rooms {
		if rr.dir == dir {
			return true
		}
	}
	return false
}

func (m *Manager) cleaner() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.CleanEvery)
	defer t.Stop()
	for {
		m.clean()
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// clean applies the retention: files older than MaxAge go, then the
// oldest until the total is within MaxBytes; files being written stay.
func (m *Manager) clean() {
	if m.cfg.MaxAge <= 0 && m.cfg.MaxBytes <= 0 {
		return
	}
	m.cleanMu.Lock()
	defer m.cleanMu.Unlock()
	files, err := m.Files()
	if err != nil {
		m.log.Warn("retention: listing the recordings", "err", err)
		return
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	now := time.Now()
	for _, f := range files { // oldest first
		old := m.cfg.MaxAge > 0 && now.Sub(f.Start.Add(f.Duration)) > m.cfg.MaxAge
		over := m.cfg.MaxBytes > 0 && total > m.cfg.MaxBytes
		if f.State == StateRecording || f.Format == "json" || (!old && !over) {
			continue // manifests go with their room's last file
		}
		if err := m.remove(f.Path); err != nil {
			m.log.Warn("retention", "err", err)
			continue
		}
		total -= f.Size
		m.log.Info("retention deleted a recording", "path", f.Path, "age", now.Sub(f.Start).Round(time.Second), "size", f.Size)
	}
}
