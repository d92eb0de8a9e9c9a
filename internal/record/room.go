package record

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Group rooms are recorded one file per participant track, under
// <dir>/@rooms/<room>/<room>-<UTC time>/, beside a manifest.json that
// says who published which track and when each file starts, so a tool
// can lay them side by side. The manifest is rewritten (to a temporary
// file, then renamed) whenever a track comes or goes.

// RoomTrack is one published track of a group room.
type RoomTrack struct {
	ID          string // the track's ID in the room (tap.Options.Tracks)
	Participant string // its publisher
	Kind        string // audio or video
	Codec       string // the MIME type
}

// ManifestName is the manifest's file name in a room recording.
const ManifestName = "manifest.json"

// Manifest is a room recording's manifest.json.
type Manifest struct {
	Room    string          `json:"room"`
	Start   time.Time       `json:"start"` // when the recording started
	End     *time.Time      `json:"end,omitempty"`
	Tracks  []ManifestTrack `json:"tracks"`
	Version int             `json:"version"` // 1
}

// ManifestTrack is one participant track's file.
type ManifestTrack struct {
	Participant string     `json:"participant"`
	Track       string     `json:"track"`
	Kind        string     `json:"kind"`
	Codec       string     `json:"codec"`
	File        string     `json:"file,omitempty"`  // in the manifest's directory; "" until its first frame
	Offset      float64    `json:"offset"`          // seconds from Start to the file's first frame
	Start       *time.Time `json:"start,omitempty"` // the file's first frame
	End         *time.Time `json:"end,omitempty"`   // the track ended (or the recording stopped)
	Error       string     `json:"error,omitempty"` // why it is not recorded
}

type roomRecorder struct {
	name   string
	dir    string
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	manifest Manifest
	tracks   map[string]*roomTrack
	err      string
}

type roomTrack struct {
	rec *Recorder
	idx int // in manifest.Tracks
}

// StartRoom records a group room: every participant track, present and
// future, until StopRoom. The room must exist (Config.RoomTracks).
func (m *Manager) StartRoom(room string) error {
	if m.cfg.RoomTracks == nil || m.cfg.OpenTrack == nil {
		return errors.New("record: group rooms are not recorded here")
	}
	if err := checkName(room); err != nil {
		return err
	}
	if _, ok := m.cfg.RoomTracks(room); !ok {
		return fmt.Errorf("room %s: %w", room, ErrNoRoom)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("record: shutting down")
	}
	if _, ok := m.rooms[room]; ok {
		return fmt.Errorf("room %s: %w", room, ErrRecording)
	}
	now := time.Now()
	ctx, cancel := context.WithCancel(m.ctx)
	rr := &roomRecorder{name: room, dir: filepath.Join(m.cfg.Dir, RoomsDir, room, room+"-"+now.UTC().Format(fileTime)),
		cancel: cancel, done: make(chan struct{}), tracks: map[string]*roomTrack{},
		manifest: Manifest{Room: room, Start: now, Tracks: []ManifestTrack{}, Version: 1}}
	m.rooms[room] = rr
	go m.runRoom(ctx, rr)
	return nil
}

// ErrNoRoom is a room that does not exist (nobody in it).
var ErrNoRoom = errors.New("no such room")

// StopRoom ends a room's recording and waits for its files and manifest.
func (m *Manager) StopRoom(room string) error {
	m.mu.Lock()
	rr, ok := m.rooms[room]
	delete(m.rooms, room)
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("room %s: %w", room, ErrNotRecording)
	}
	rr.cancel()
	<-rr.done
	return nil
}

// runRoom follows the room's tracks (polled every Retry: track changes
// are rare) until ctx ends.
func (m *Manager) runRoom(ctx context.Context, rr *roomRecorder) {
	defer close(rr.done)
	t := time.NewTicker(m.cfg.Retry)
	defer t.Stop()
	rr.writeManifest(m)
	for {
		tracks, _ := m.cfg.RoomTracks(rr.name)
		m.followTracks(ctx, rr, tracks)
		select {
		case <-ctx.Done():
			rr.mu.Lock()
			recs := make([]*Recorder, 0, len(rr.tracks))
			for _, tr := range rr.tracks {
				recs = append(recs, tr.rec)
			}
			rr.mu.Unlock()
			for _, r := range recs {
				r.Stop()
			}
			rr.mu.Lock()
			end := time.Now()
			rr.manifest.End = &end
			for i := range rr.manifest.Tracks {
				if rr.manifest.Tracks[i].End == nil {
					rr.manifest.Tracks[i].End = &end
				}
			}
			rr.mu.Unlock()
			rr.writeManifest(m)
			return
		case <-t.C:
		}
	}
}

// followTracks starts a recorder for each new track.
func (m *Manager) followTracks(ctx context.Context, rr *roomRecorder, tracks []RoomTrack) {
	for _, tr := range tracks {
		rr.mu.Lock()
		_, known := rr.tracks[tr.ID]
		rr.mu.Unlock()
		if known {
			continue
		}
		rr.mu.Lock()
		idx := len(rr.manifest.Tracks)
		rr.manifest.Tracks = append(rr.manifest.Tracks, ManifestTrack{Participant: tr.Participant, Track: tr.ID, Kind: tr.Kind, Codec: tr.Codec})
		rr.mu.Unlock()
		id := tr.ID
		rec := startRecorder(ctx, recorderConfig{
			name: rr.name + "/" + id, dir: rr.dir, prefix: safeName(tr.Participant) + "-" + safeName(id), once: true, log: m.log,
			open: func(ctx context.Context) (Source, error) { // once: a returning participant publishes a new track
				return m.cfg.OpenTrack(ctx, rr.name, id)
			},
			opened: func(path string, start time.Time, written *atomic.Int64) {
				m.fileOpened(path, start, written)
				rr.mu.Lock()
				mt := &rr.manifest.Tracks[idx]
				mt.File, mt.Start, mt.Offset = filepath.Base(path), &start, start.Sub(rr.manifest.Start).Seconds()
				rr.mu.Unlock()
				rr.writeManifest(m)
			},
			done: m.fileDone,
			end: func(r *Recorder) {
				rr.mu.Lock()
				end := time.Now()
				mt := &rr.manifest.Tracks[idx]
				mt.End = &end
				if st := r.Status(); st.State == StateFailed {
					mt.Error = st.Error
				}
				rr.mu.Unlock()
				rr.writeManifest(m)
			},
		})
		rr.mu.Lock() // followTracks alone adds tracks: none came in between
		rr.tracks[id] = &roomTrack{rec: rec, idx: idx}
		rr.mu.Unlock()
	}
}

// safeName keeps a participant's or track's ID usable in a file name.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, s)
	if len(s) > 48 {
		s = s[:48]
	}
	if s == "" || s[0] == '.' {
		s = "_" + s
	}
	return s
}

// writeManifest replaces the manifest (temporary file, rename).
func (rr *roomRecorder) writeManifest(m *Manager) {
	rr.mu.Lock()
	b, err := json.MarshalIndent(rr.manifest, "", "  ")
	rr.mu.Unlock()
	if err == nil {
		err = os.MkdirAll(rr.dir, 0o750)
	}
	if err == nil {
		tmp := filepath.Join(rr.dir, "."+ManifestName+".tmp")
		if err = os.WriteFile(tmp, append(b, '\n'), 0o640); err == nil {
			err = os.Rename(tmp, filepath.Join(rr.dir, ManifestName))
		}
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if err != nil {
		rr.err = fmt.Sprintf("writing the manifest in %s: %v", rr.dir, err)
		m.log.Warn("room recording", "room", rr.name, "err", rr.err)
	} else {
		rr.err = ""
	}
}

// roomStatus is a room recorder's line in Recordings.
func (rr *roomRecorder) status() Recording {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	st := Status{State: StateRecording, Since: rr.manifest.Start, File: rr.dir, Error: rr.err}
	for _, tr := range rr.tracks {
		s := tr.rec.Status()
		st.Frames += s.Frames
		st.Dropped += s.Dropped
	}
	return Recording{Room: rr.name, Status: st}
}

// roomRecordings lists the room recorders (mu held).
func (m *Manager) roomRecordings() []Recording {
	out := make([]Recording, 0, len(m.rooms))
	for _, rr := range m.rooms {
		out = append(out, rr.status())
	}
	slices.SortFunc(out, func(a, b Recording) int { return strings.Compare(a.Room, b.Room) })
	return out
}
