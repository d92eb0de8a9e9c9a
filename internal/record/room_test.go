package record

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/internal/record/recordtest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// TestRoom: a group room recorded one file per participant track, with
// a manifest that follows participants coming and going.
func TestRoom(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	tracks, frames := h264Stream(t, 2*frameRate)
	var video, audio []Frame
	for _, f := range frames {
		if f.Track == 0 {
			video = append(video, f)
		} else {
			f.Track = 0
			audio = append(audio, f)
		}
	}
	alice := newFakeSource(tracks[:1], video, false)
	bob := newFakeSource(tracks[1:], audio, false)
	var mu sync.Mutex
	live := []RoomTrack{{ID: "t1", Participant: "alice", Kind: "video", Codec: "video/H264"}}
	dir := t.TempDir()
	done := make(chan File, 4)
	m, err := New(Config{Dir: dir, Retry: 10 * time.Millisecond, OnFile: func(f File) { done <- f },
		Open:      func(context.Context, string) (Source, error) { return nil, errNotLive },
		IsNotLive: func(err error) bool { return errors.Is(err, errNotLive) },
		RoomTracks: func(room string) ([]RoomTrack, bool) {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(live), room == "meet"
		},
		OpenTrack: func(_ context.Context, room, id string) (Source, error) {
			if id == "t1" {
				return alice, nil
			}
			return bob, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.StartRoom("nowhere"); !errors.Is(err, ErrNoRoom) {
		t.Errorf("a room nobody is in: %v", err)
	}
	if err := m.StartRoom("meet"); err != nil {
		t.Fatal(err)
	}
	if err := m.StartRoom("meet"); !errors.Is(err, ErrRecording) {
		t.Errorf("second start: %v", err)
	}
	<-alice.drained
	mu.Lock()
	live = append(live, RoomTrack{ID: "t2", Participant: "bob", Kind: "audio", Codec: "audio/opus"})
	mu.Unlock()
	<-bob.drained
	close(alice.gone) // alice leaves
	aliceFile := <-done
	if rs := m.Recordings(); len(rs) != 1 || rs[0].Room != "meet" {
		t.Errorf("recorders %+v", rs)
	}
	if err := m.StopRoom("meet"); err != nil {
		t.Fatal(err)
	}
	bobFile := <-done
	if aliceFile.Room != "meet" || bobFile.Room != "meet" || filepath.Dir(aliceFile.Path) != filepath.Dir(bobFile.Path) {
		t.Errorf("files %+v %+v", aliceFile, bobFile)
	}
	if in := recordtest.Probe(t, aliceFile.Path); !slices.Equal(in.Codecs, []string{"h264"}) || in.Frames["h264"] != 2*frameRate {
		t.Errorf("alice's file: %+v", in)
	}
	if in := recordtest.Probe(t, bobFile.Path); !slices.Equal(in.Codecs, []string{"opus"}) {
		t.Errorf("bob's file: %+v", in)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(aliceFile.Path), ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var man Manifest
	if err := json.Unmarshal(b, &man); err != nil {
		t.Fatal(err)
	}
	if man.Room != "meet" || man.End == nil || len(man.Tracks) != 2 {
		t.Fatalf("manifest %s", b)
	}
	a, o := man.Tracks[0], man.Tracks[1]
	if a.Participant != "alice" || a.Track != "t1" || a.File != filepath.Base(aliceFile.Path) || a.End == nil || a.Start == nil ||
		o.Participant != "bob" || o.Kind != "audio" || o.File != filepath.Base(bobFile.Path) || o.End == nil || o.Offset < 0 {
		t.Errorf("manifest %s", b)
	}
	files, _ := m.Files()
	var formats []string
	for _, f := range files {
		formats = append(formats, f.Format)
	}
	slices.Sort(formats)
	if !slices.Equal(formats, []string{"json", "mp4", "mp4"}) {
		t.Errorf("listed %+v", files)
	}
	// Deleting the room's files takes the manifest and directories along.
	for _, f := range files {
		if f.Format != "json" {
			if err := m.Delete(f.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left in the record directory: %v", left)
	}
}
