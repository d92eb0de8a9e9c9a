package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/record/recordtest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
)

// recordingsList is GET /api/recordings.
type recordingsList struct {
	Files     []recordedFile
	Recorders []struct {
		Stream, State, Error, File string
		Frames, Dropped            uint64
	}
}

type recordedFile struct {
	ID, Stream, Room, Path, URL, Format, State string
	Start                                      time.Time
	Duration                                   float64
	Size                                       int64
}

func listRecordings(t *testing.T, base string, hdr ...string) recordingsList {
	t.Helper()
	code, _, body := do(t, http.MethodGet, base+"/api/recordings", "", hdr...)
	if code != http.StatusOK {
		t.Fatalf("GET /api/recordings: %d %s", code, body)
	}
	var l recordingsList
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// waitRecorded polls the listing (the API has no push) until a file of
// the stream holds at least d of media.
func waitRecorded(ctx context.Context, t *testing.T, base, stream string, d time.Duration) {
	t.Helper()
	pollUntil(ctx, t, fmt.Sprintf("%s of %s recorded", d, stream), func() bool {
		for _, f := range listRecordings(t, base).Files {
			if f.Stream == stream && f.Duration >= d.Seconds() {
				return true
			}
		}
		return false
	})
}

// recordFor10s records a live stream through the API until 10 s of it
// are in the file, stops, and returns the file's listing and the span
// from its first frame (as the tap stamped its arrival) to the stop.
func recordFor10s(ctx context.Context, t *testing.T, ops, stream string) (recordedFile, time.Duration) {
	t.Helper()
	if code, _, body := do(t, http.MethodPost, ops+"/api/streams/"+stream+"/record", ""); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	if code, _, body := do(t, http.MethodPost, ops+"/api/streams/"+stream+"/record", ""); code != http.StatusConflict {
		t.Errorf("second start: %d %s", code, body)
	}
	waitRecorded(ctx, t, ops, stream, 10*time.Second)
	if code, _, body := do(t, http.MethodDelete, ops+"/api/streams/"+stream+"/record", ""); code != http.StatusNoContent {
		t.Fatalf("stop: %d %s", code, body)
	}
	stopped := time.Now()
	if code, _, _ := do(t, http.MethodDelete, ops+"/api/streams/"+stream+"/record", ""); code != http.StatusNotFound {
		t.Errorf("second stop: %d", code)
	}
	for _, f := range listRecordings(t, ops).Files {
		if f.Stream == stream {
			if f.State != "done" || f.Format != "mp4" || !strings.HasPrefix(f.ID, stream+"/"+stream+"-") {
				t.Errorf("listed %+v", f)
			}
			return f, stopped.Sub(f.Start)
		}
	}
	t.Fatalf("no file of %s listed", stream)
	return recordedFile{}, 0
}

// TestRecordStream: a WHIP-published stream (H.264 + Opus) and an
// RTMP-published one (H.264 + AAC, Opus through the ingest) recorded
// through the API for 10 s: ffprobe reads H.264 and Opus, and for the
// WHIP one a duration within 0.5 s of the span from the first frame to
// the stop. The file downloads with ranges and deletes. The API's
// refusals are clear.
//
// The issue asks for the file's duration within 0.5 s of the recording:
// the video's, and for the WHIP stream the audio's too (an RTMP stream's
// audio ends earlier by its transcoder's delay; see docs/recording.md).
func TestRecordStream(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	dir := t.TempDir()
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1"; c.RecordDir = dir })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ops := srv.OpsURL()
	if code, _, body := do(t, http.MethodPost, ops+"/api/streams/s/record", ""); code != http.StatusNotFound || errorCode(body) != "not_live" {
		t.Errorf("recording a stream nobody publishes: %d %s", code, body)
	}
	if code, _, _ := do(t, http.MethodGet, srv.URL()+"/api/recordings", ""); code != http.StatusNotFound {
		t.Errorf("the main port of an open server lists recordings: %d", code)
	}
	// ".." is a valid stream name; as a directory it would be the parent.
	if code, _, body := do(t, http.MethodPost, ops+"/api/streams/%2E%2E/record", ""); code != http.StatusBadRequest && code != http.StatusNotFound {
		t.Errorf("recording stream \"..\": %d %s", code, body)
	}
	whipPublish(ctx, t, srv.URL()+"/whip/w")
	studio(ctx, t, fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr()))
	waitTracks(ctx, t, srv, "w", 2)
	waitTracks(ctx, t, srv, "s", 2)
	if code, _, body := do(t, http.MethodPost, ops+"/api/streams/s/record", `{"format":"avi"}`); code != http.StatusBadRequest {
		t.Errorf("bad format: %d %s", code, body)
	}

	f, span := recordFor10s(ctx, t, ops, "w")
	in := recordtest.Probe(t, f.Path)
	t.Logf("WHIP: recorded span %v (first frame to stop); ffprobe: duration %v, video ends at %v, audio at %v; listed %.3fs, %d bytes, frames %v",
		span.Round(time.Millisecond), in.Duration, in.End["h264"], in.End["opus"], f.Duration, f.Size, in.Frames)
	if !slices.Equal(in.Codecs, []string{"h264", "opus"}) {
		t.Errorf("codecs %v, want h264 and opus", in.Codecs)
	}
	// The video carries the timeline; the tap places the audio by its
	// arrival against the video's earliest-arriving frames.
	if d := in.End["h264"] - span; d.Abs() > 500*time.Millisecond {
		t.Errorf("ffprobe: the video lasts %v, the recorded span is %v", in.End["h264"], span)
	}
	if d := in.End["opus"] - in.End["h264"]; d.Abs() > 500*time.Millisecond {
		t.Errorf("ffprobe: the audio ends at %v, the video at %v", in.End["opus"], in.End["h264"])
	}
	if math.Abs(f.Duration-in.Duration.Seconds()) > 0.2 {
		t.Errorf("listed duration %.3f s, ffprobe %v", f.Duration, in.Duration)
	}

	// RTMP: the tracks are lined up by the publisher's shared clock; the
	// ingest delivers its first seconds in a burst (track analysis) and its
	// audio late (transcoded), so the span differs from the wall clock's
	// and the audio ends earlier: logged.
	rf, rspan := recordFor10s(ctx, t, ops, "s")
	rin := recordtest.Probe(t, rf.Path)
	t.Logf("RTMP: recorded span %v; ffprobe: duration %v, video ends at %v, audio at %v; frames %v",
		rspan.Round(time.Millisecond), rin.Duration, rin.End["h264"], rin.End["opus"], rin.Frames)
	if !slices.Equal(rin.Codecs, []string{"h264", "opus"}) || rin.Frames["h264"] < 10*25 || rin.Frames["opus"] < 9*50 {
		t.Errorf("RTMP recording: %v, frames %v; want h264 and opus, >= 10 s", rin.Codecs, rin.Frames)
	}

	// Download: whole, and a range.
	code, hdr, body := do(t, http.MethodGet, ops+f.URL, "")
	if code != http.StatusOK || int64(len(body)) != f.Size || hdr.Get("Content-Type") != "video/mp4" {
		t.Errorf("download: %d, %d bytes of %d, %s", code, len(body), f.Size, hdr.Get("Content-Type"))
	}
	whole := body
	code, _, body = do(t, http.MethodGet, ops+f.URL, "", "Range", "bytes=100-199")
	if code != http.StatusPartialContent || body != whole[100:200] {
		t.Errorf("range: %d, %d bytes", code, len(body))
	}
	for _, bad := range []string{"/api/recordings/s/..%2F..%2Fetc%2Fpasswd", "/api/recordings/s/nothing.mp4", "/api/recordings/s/" + filepath.Base(f.Path) + ".json"} {
		if code, _, _ := do(t, http.MethodGet, ops+bad, ""); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", bad, code)
		}
	}
	if code, _, body := do(t, http.MethodDelete, ops+f.URL, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _, _ := do(t, http.MethodGet, ops+f.URL, ""); code != http.StatusNotFound {
		t.Errorf("deleted file still served: %d", code)
	}
	if _, err := os.Stat(f.Path); !os.IsNotExist(err) {
		t.Errorf("deleted file still on disk: %v", err)
	}
}

// TestRecordAuth: on the main port the recording API answers admin
// tokens only; downloads also take ?token=.
func TestRecordAuth(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret; c.RecordDir = t.TempDir() })
	base := srv.URL()
	if code, _, _ := do(t, http.MethodGet, base+"/api/recordings", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
	viewer := mintToken(t, "s", auth.Grants{Subscribe: true, Publish: true})
	if code, _, _ := do(t, http.MethodPost, base+"/api/streams/s/record", "", "Authorization", "Bearer "+viewer); code != http.StatusForbidden {
		t.Errorf("publisher token starting a recording: %d", code)
	}
	admin := mintToken(t, "*", auth.Grants{Admin: true})
	listRecordings(t, base, "Authorization", "Bearer "+admin)
	if code, _, _ := do(t, http.MethodGet, base+"/api/recordings/s/x.mp4?token="+admin, ""); code != http.StatusNotFound {
		t.Errorf("download with ?token=: %d, want 404 (authorized, no such file)", code)
	}
	if code, _, _ := do(t, http.MethodGet, base+"/api/recordings?token="+admin, ""); code != http.StatusUnauthorized {
		t.Errorf("listing with ?token=: %d, want 401 (only downloads take it)", code)
	}
	// The recordings page, on both listeners (its API asks for the token).
	for _, u := range []string{srv.OpsURL() + "/recordings", srv.OpsURL() + "/app/recordings.js", base + "/recordings"} {
		if code, _, body := do(t, http.MethodGet, u, ""); code != http.StatusOK || !strings.Contains(body, "ecordings") {
			t.Errorf("GET %s: %d", u, code)
		}
	}
}

// TestRecordUnwritable: recording into a directory that cannot be
// written stops the recording with the reason; the stream stays live
// for its viewers.
func TestRecordUnwritable(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	dir := t.TempDir()
	recordtest.ReadOnly(t, dir)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1"; c.RecordDir = dir })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	studio(ctx, t, fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr()))
	_, video, audio := watchLive(ctx, t, srv, "s")
	if code, _, body := do(t, http.MethodPost, srv.OpsURL()+"/api/streams/s/record", ""); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	var why string
	pollUntil(ctx, t, "the recording failing", func() bool {
		for _, r := range listRecordings(t, srv.OpsURL()).Recorders {
			if r.Stream == "s" && r.State == "failed" {
				why = r.Error
				return true
			}
		}
		return false
	})
	t.Logf("status: %s", why)
	if !strings.Contains(why, dir) {
		t.Errorf("the error %q does not name the directory", why)
	}
	drain(video)
	drain(audio)
	waitN(ctx, t, video, 100, "H.264 after the recording failed")
	waitN(ctx, t, audio, 50, "Opus after the recording failed")
	// Fixed (here: another start fails the same way, but is allowed).
	if code, _, body := do(t, http.MethodPost, srv.OpsURL()+"/api/streams/s/record", ""); code != http.StatusCreated {
		t.Errorf("a new start after a failure: %d %s", code, body)
	}
}

// recordChildEnv makes TestRecordChild a server recording stream "s"
// (record: always) into the directory it names.
const recordChildEnv = "PARLEY_TEST_RECORD_CHILD"

// TestRecordChild is the server TestRecordKilled kills; it runs only in
// that child process.
func TestRecordChild(t *testing.T) {
	dir := os.Getenv(recordChildEnv)
	if dir == "" {
		t.Skip("the child of TestRecordKilled")
	}
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP, c.RecordDir, c.DataDir = "127.0.0.1", dir, dir
		c.Streams = map[string]config.Stream{"s": {Record: "always"}}
	})
	fmt.Printf("\nRTMP %s\nOPS %s\n", srv.RTMPAddr(), srv.OpsURL())
	select {} // until killed
}

// TestRecordKilled: a server recording a stream (record: always) killed
// with SIGKILL after 10 s leaves a file that decodes for at least 8 s.
func TestRecordKilled(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	child, addrs := runChild(t, "TestRecordChild", recordChildEnv+"="+dir, "RTMP", "OPS")
	studio(ctx, t, "rtmp://"+addrs["RTMP"]+"/live/s")
	waitRecorded(ctx, t, addrs["OPS"], "s", 10*time.Second)
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	files, _ := filepath.Glob(filepath.Join(dir, "s", "s-*.mp4"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	in := recordtest.Probe(t, files[0])
	t.Logf("killed after >= 10 s: ffprobe duration %v, frames %v", in.Duration, in.Frames)
	if in.Frames["h264"] < 8*25 || in.Frames["opus"] < 8*50 {
		t.Errorf("decoded %v, want >= 8 s of H.264 (25 fps) and Opus (20 ms frames)", in.Frames)
	}
}

// manifestTrack is a track of a room recording's manifest.json.
type manifestTrack struct {
	Participant, Track, Kind, File string
	Offset                         float64
	End                            *time.Time
}

// TestRecordRoom: a group call recorded one file per participant track
// (VP8 here: WebM) with a manifest of who published which track when.
func TestRecordRoom(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1"; c.RecordDir = t.TempDir() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ops := srv.OpsURL()
	if code, _, body := do(t, http.MethodPost, ops+"/api/rooms/team/record", ""); code != http.StatusNotFound || errorCode(body) != "no_room" {
		t.Errorf("a room nobody is in: %d %s", code, body)
	}
	stop := make(chan struct{})
	defer close(stop)
	a := joinSFU(t, srv.URL(), "team", "a")
	go sendKeyframes(stop, a.publish())
	waitLive(ctx, t, srv, sfu.Calls, "team")
	b := joinSFU(t, srv.URL(), "team", "b")
	if code, _, body := do(t, http.MethodPost, ops+"/api/rooms/team/record", ""); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	if code, _, _ := do(t, http.MethodPost, ops+"/api/rooms/team/record", ""); code != http.StatusConflict {
		t.Errorf("second start: %d", code)
	}
	roomFiles := func(format string) []recordedFile {
		var out []recordedFile
		for _, f := range listRecordings(t, ops).Files {
			if f.Room == "team" && f.Format == format {
				out = append(out, f)
			}
		}
		return out
	}
	pollUntil(ctx, t, "a's track recorded", func() bool { fs := roomFiles("webm"); return len(fs) == 1 && fs[0].Size > 0 })
	go sendKeyframes(stop, b.publish()) // b joins the stage later
	pollUntil(ctx, t, "b's track recorded", func() bool { return len(roomFiles("webm")) == 2 })
	if code, _, body := do(t, http.MethodDelete, ops+"/api/rooms/team/record", ""); code != http.StatusNoContent {
		t.Fatalf("stop: %d %s", code, body)
	}
	files, manifests := roomFiles("webm"), roomFiles("json")
	if len(manifests) != 1 {
		t.Fatalf("manifests %+v", manifests)
	}
	code, _, body := do(t, http.MethodGet, ops+manifests[0].URL, "")
	var man struct {
		Room   string
		End    *time.Time
		Tracks []manifestTrack
	}
	if err := json.Unmarshal([]byte(body), &man); err != nil || code != http.StatusOK {
		t.Fatalf("manifest: %d %s %v", code, body, err)
	}
	if man.Room != "team" || man.End == nil || len(man.Tracks) != 2 || man.Tracks[0].Participant == man.Tracks[1].Participant ||
		man.Tracks[1].Offset < man.Tracks[0].Offset || man.Tracks[0].End == nil {
		t.Errorf("manifest %s", body)
	}
	for _, f := range files {
		if !slices.ContainsFunc(man.Tracks, func(tr manifestTrack) bool { return tr.File == filepath.Base(f.Path) }) {
			t.Errorf("%s is not in the manifest", f.ID)
		}
		if codecs, err := rtmptest.Probe(ctx, f.Path); err != nil || !slices.Equal(codecs, []string{"vp8"}) {
			t.Errorf("%s: %v %v", f.ID, codecs, err)
		}
	}
}

// TestRecordAlways: a stream with record: always is recorded from its
// publish, and its publisher coming back starts a new file; the first
// one is finished and plays.
func TestRecordAlways(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP, c.RecordDir = "127.0.0.1", t.TempDir()
		c.Streams = map[string]config.Stream{"s": {Record: "always", RecordSegmentSize: 50 << 20}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ops := srv.OpsURL()
	url := fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr())
	ff := studio(ctx, t, url)
	waitRecorded(ctx, t, ops, "s", 3*time.Second)
	ff.kill()
	pollUntil(ctx, t, "the first file finished", func() bool {
		fs := listRecordings(t, ops).Files
		return len(fs) == 1 && fs[0].State == "done"
	})
	studio(ctx, t, url)
	pollUntil(ctx, t, "a second file", func() bool { return len(listRecordings(t, ops).Files) == 2 })
	l := listRecordings(t, ops)
	if len(l.Recorders) != 1 || l.Recorders[0].Stream != "s" {
		t.Errorf("recorders %+v", l.Recorders)
	}
	// At least a GOP of video (the listing's 3 s may be the audio's).
	first := l.Files[0]
	in := recordtest.Probe(t, first.Path)
	t.Logf("the first publish's file: video ends at %v, audio at %v, frames %v", in.End["h264"], in.End["opus"], in.Frames)
	if in.Frames["h264"] < 25 || !slices.Equal(in.Codecs, []string{"h264", "opus"}) {
		t.Errorf("the first publish's file: %+v", in)
	}
}
