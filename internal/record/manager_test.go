package record

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/internal/record/recordtest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/tap"
)

var errNotLive = errors.New("not live")

// fakeSource hands out frames, then blocks (live, nothing new) or ends
// (the publisher went) when eof is set.
type fakeSource struct {
	tracks  []Track
	frames  []Frame
	eof     bool
	drained chan struct{} // closed when every frame was read
	once    sync.Once
	closed  chan struct{}
	gone    chan struct{} // closed: the publisher goes (Read ends with io.EOF)
}

func newFakeSource(tracks []Track, frames []Frame, eof bool) *fakeSource {
	return &fakeSource{tracks: tracks, frames: frames, eof: eof, drained: make(chan struct{}), closed: make(chan struct{}), gone: make(chan struct{})}
}

func (s *fakeSource) Tracks() []Track { return s.tracks }

func (s *fakeSource) Read(ctx context.Context) (Frame, error) {
	if len(s.frames) > 0 {
		f := s.frames[0]
		s.frames = s.frames[1:]
		return f, nil
	}
	s.once.Do(func() { close(s.drained) })
	if s.eof {
		return Frame{}, io.EOF
	}
	select {
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	case <-s.gone:
		return Frame{}, io.EOF
	}
}

func (s *fakeSource) Close() { close(s.closed) }

func (s *fakeSource) Stats() tap.ReaderStats { return tap.ReaderStats{} }

// testManager is a Manager whose streams are the sources in srcs (each
// opened once; then not live).
func testManager(t *testing.T, cfg Config, srcs map[string][]*fakeSource) *Manager {
	t.Helper()
	var mu sync.Mutex
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.Open = func(ctx context.Context, stream string) (Source, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(srcs[stream]) == 0 {
			return nil, errNotLive
		}
		s := srcs[stream][0]
		srcs[stream] = srcs[stream][1:]
		return s, nil
	}
	cfg.IsNotLive = func(err error) bool { return errors.Is(err, errNotLive) }
	cfg.Retry = 10 * time.Millisecond
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestStartStop(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	tracks, frames := h264Stream(t, 5*frameRate)
	src := newFakeSource(tracks, frames, false)
	done := make(chan File, 4)
	m := testManager(t, Config{OnFile: func(f File) { done <- f }}, map[string][]*fakeSource{"live": {src}})
	if err := m.Start("nobody", Options{}, false); !errors.Is(err, errNotLive) {
		t.Errorf("a stream nobody publishes: %v, want not live", err)
	}
	for _, bad := range []string{"..", ".", RoomsDir, "a/b"} {
		if err := m.Start(bad, Options{}, true); !errors.Is(err, ErrName) {
			t.Errorf("stream %q: %v, want ErrName", bad, err)
		}
	}
	if err := m.Start("live", Options{}, false); err != nil {
		t.Fatal(err)
	}
	if err := m.Start("live", Options{}, false); !errors.Is(err, ErrRecording) {
		t.Errorf("second start: %v, want ErrRecording", err)
	}
	<-src.drained
	if st, _ := m.Status("live"); st.State != StateRecording || st.File == "" {
		t.Errorf("status %+v while recording", st)
	}
	files, _ := m.Files()
	if len(files) != 1 || files[0].State != StateRecording {
		t.Errorf("files while recording: %+v", files)
	}
	if err := m.Stop("live"); err != nil {
		t.Fatal(err)
	}
	<-src.closed
	if err := m.Stop("live"); !errors.Is(err, ErrNotRecording) {
		t.Errorf("second stop: %v", err)
	}
	f := <-done
	in := recordtest.Probe(t, f.Path)
	if !slices.Equal(in.Codecs, []string{"h264", "opus"}) || in.Frames["h264"] != 5*frameRate {
		t.Errorf("ffprobe: %+v", in)
	}
	if d := in.Duration - 5*time.Second; d < -100*time.Millisecond || d > 100*time.Millisecond {
		t.Errorf("ffprobe duration %v, want 5 s", in.Duration)
	}
	files, err := m.Files()
	if err != nil || len(files) != 1 {
		t.Fatalf("files %+v, %v", files, err)
	}
	got := files[0]
	if got.Stream != "live" || got.State != "done" || got.Size != f.Size || got.Format != "mp4" || !strings.HasPrefix(got.ID, "live/live-") {
		t.Errorf("listed %+v", got)
	}
	if d := got.Duration - in.Duration; d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("listed duration %v, ffprobe's %v", got.Duration, in.Duration)
	}
	// Read back from the file, as after a restart.
	if d, err := readDuration(f.Path, FormatMP4); err != nil || d != got.Duration {
		t.Errorf("duration read back %v, %v; want %v", d, err, got.Duration)
	}
	if _, err := m.Lookup("../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup outside the directory: %v", err)
	}
	if err := m.Delete(got.ID); err != nil {
		t.Fatal(err)
	}
	if files, _ := m.Files(); len(files) != 0 {
		t.Errorf("after delete: %+v", files)
	}
	if _, err := os.Stat(filepath.Dir(f.Path)); !os.IsNotExist(err) {
		t.Errorf("the stream's empty directory stayed: %v", err)
	}
}

// TestAlwaysSegmentsAndRepublish: record: always waits for a publisher,
// cuts files at the segment duration, and starts a new file when the
// stream is published again.
func TestAlwaysSegmentsAndRepublish(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	tracks, frames := h264Stream(t, 4*frameRate)
	first, second := newFakeSource(tracks, frames, true), newFakeSource(tracks, frames, false)
	done := make(chan File, 16)
	m := testManager(t, Config{OnFile: func(f File) { done <- f }}, map[string][]*fakeSource{"cam": {first, second}})
	if err := m.Start("cam", Options{SegmentDuration: 2 * time.Second}, true); err != nil {
		t.Fatal(err)
	}
	<-second.drained
	if err := m.Stop("cam"); err != nil {
		t.Fatal(err)
	}
	var got []File
	for len(got) < 4 {
		got = append(got, <-done)
	}
	for _, f := range got {
		in := recordtest.Probe(t, f.Path)
		if in.Frames["h264"] != 2*frameRate {
			t.Errorf("%s: %d frames, want %d (segments of 2 s)", f.Path, in.Frames["h264"], 2*frameRate)
		}
	}
}

// TestSegmentSize: a file past the segment size ends at the next
// keyframe, and every segment plays on its own.
func TestSegmentSize(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	tracks, frames := h264Stream(t, 4*frameRate)
	src := newFakeSource(tracks, frames, true)
	done := make(chan File, 8)
	m := testManager(t, Config{OnFile: func(f File) { done <- f }}, map[string][]*fakeSource{"z": {src}})
	if err := m.Start("z", Options{SegmentSize: 1}, false); err != nil { // every keyframe starts a file
		t.Fatal(err)
	}
	for range 4 {
		f := <-done
		if in := recordtest.Probe(t, f.Path); in.Frames["h264"] != frameRate || !slices.Equal(in.Codecs, []string{"h264", "opus"}) {
			t.Errorf("%s: %+v, want one GOP with audio", filepath.Base(f.Path), in)
		}
	}
}

func TestKeyframesMode(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	tracks, frames := h264Stream(t, 6*frameRate)
	src := newFakeSource(tracks, frames, true)
	done := make(chan File, 1)
	m := testManager(t, Config{OnFile: func(f File) { done <- f }}, map[string][]*fakeSource{"k": {src}})
	if err := m.Start("k", Options{Mode: ModeKeyframes, KeyframeInterval: 2 * time.Second}, false); err != nil {
		t.Fatal(err)
	}
	f := <-done
	in := recordtest.Probe(t, f.Path)
	if !slices.Equal(in.Codecs, []string{"h264"}) || in.Frames["h264"] != 3 {
		t.Errorf("keyframes every 2 s of 6 s: %+v, want 3 h264 frames and no audio", in)
	}
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	m := testManager(t, Config{Dir: dir, MaxBytes: 2500, MaxAge: time.Hour}, nil)
	write := func(name string, size int, age time.Duration) string {
		p := filepath.Join(dir, "s", name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		mod := time.Now().Add(-age)
		_ = os.Chtimes(p, mod, mod)
		return p
	}
	ancient := write("s-2020-01-01T00-00-00.000Z.mp4", 10, 0)
	now := time.Now().UTC()
	oldest := write("s-"+now.Add(-3*time.Minute).Format(fileTime)+".mp4", 1000, 0)
	middle := write("s-"+now.Add(-2*time.Minute).Format(fileTime)+".mp4", 1000, 0)
	newest := write("s-"+now.Add(-time.Minute).Format(fileTime)+".mp4", 1000, 0)
	m.clean()
	for p, want := range map[string]bool{ancient: false, oldest: false, middle: true, newest: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s kept %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

func TestUnwritableDir(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	tracks, frames := h264Stream(t, frameRate)
	src := newFakeSource(tracks, frames, false)
	dir := t.TempDir()
	recordtest.ReadOnly(t, dir)
	m := testManager(t, Config{Dir: dir}, map[string][]*fakeSource{"s": {src}})
	if err := m.Start("s", Options{}, false); err != nil {
		t.Fatal(err)
	}
	<-src.closed // the recorder let go of the stream
	st, _ := m.Status("s")
	if st.State != StateFailed || !strings.Contains(st.Error, dir) {
		t.Errorf("status %+v, want failed naming the directory", st)
	}
	if err := m.Start("s", Options{}, false); errors.Is(err, ErrRecording) {
		t.Errorf("a failed recording blocks a new start: %v", err)
	}
}

func TestFullDisk(t *testing.T) {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	w := &fileWriter{f: f, path: "/dev/full"}
	if _, err := w.Write([]byte("x")); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("writing to a full disk: %v", err)
	}
}

func TestFormatCannotCarry(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	tracks, frames := h264Stream(t, frameRate)
	src := newFakeSource(tracks, frames, false)
	m := testManager(t, Config{}, map[string][]*fakeSource{"s": {src}})
	if err := m.Start("s", Options{Format: FormatWebM}, false); !errors.Is(err, ErrFormat) {
		t.Errorf("H.264 into WebM: %v", err)
	}
	<-src.closed
	if _, ok := m.Status("s"); ok {
		t.Error("a refused start left a recorder")
	}
}
