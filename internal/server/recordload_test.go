package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/record/recordtest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// cpuTime is the process's user + system CPU time so far.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRecordLoad records N streams at once (PARLEY_RECORD_LOAD=N; skipped
// without it: a load figure for docs/benchmarks.md), each published over
// WHIP (H.264 25 fps + Opus) in this process: no recorder may drop a frame
// (tap Stats().Dropped), and every file decodes. It logs the process's
// CPU while the streams are only published and while they are also
// recorded: the difference per stream is what recording costs with its
// tap (the depacketizing a stream's first non-RTP reader starts).
func TestRecordLoad(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PARLEY_RECORD_LOAD"))
	if n <= 0 {
		t.Skip("a load figure: PARLEY_RECORD_LOAD=50")
	}
	rtmptest.NeedFFmpeg(t)
	dir := t.TempDir()
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP, c.RecordDir = "127.0.0.1", dir
		c.PingInterval = config.Duration(time.Minute)
		// n publishers from one address on a loaded machine
		c.PendingPerIP, c.ICETimeout = n+1, config.Duration(time.Minute)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h264File, oggFile := whipClip(ctx, t)
	for i := range n {
		whipPublishClip(ctx, t, srv.URL()+fmt.Sprintf("/whip/s%d", i), h264File, oggFile)
		waitTracks(ctx, t, srv, fmt.Sprintf("s%d", i), 2)
	}
	const window = 10 * time.Second
	measure := func() float64 { // cores over the window (the media's pace, not a wait for an event)
		c0, w0 := cpuTime(t), time.Now()
		select {
		case <-time.After(window):
		case <-ctx.Done():
			t.Fatal("timed out")
		}
		return float64(cpuTime(t)-c0) / float64(time.Since(w0))
	}
	base := measure()
	for i := range n {
		if code, _, body := do(t, http.MethodPost, srv.OpsURL()+fmt.Sprintf("/api/streams/s%d/record", i), ""); code != http.StatusCreated {
			t.Fatalf("start s%d: %d %s", i, code, body)
		}
	}
	recording := measure()
	l := listRecordings(t, srv.OpsURL())
	var frames, dropped uint64
	for _, r := range l.Recorders {
		if r.State != "recording" {
			t.Errorf("%s: %s %s", r.Stream, r.State, r.Error)
		}
		frames += r.Frames
		dropped += r.Dropped
	}
	for i := range n {
		if code, _, body := do(t, http.MethodDelete, srv.OpsURL()+fmt.Sprintf("/api/streams/s%d/record", i), ""); code != http.StatusNoContent {
			t.Errorf("stop s%d: %d %s", i, code, body)
		}
	}
	files := listRecordings(t, srv.OpsURL()).Files
	if len(files) != n {
		t.Errorf("%d files for %d streams", len(files), n)
	}
	for _, f := range files[:min(len(files), 3)] {
		if in := recordtest.Probe(t, f.Path); in.Frames["h264"] < 8*25 {
			t.Errorf("%s: %v", f.ID, in.Frames)
		}
	}
	t.Logf("%d streams: publishing only %.3f cores; publishing and recording %.3f cores: %.4f cores per recording (tap + recorder); frames %d, dropped %d",
		n, base, recording, (recording-base)/float64(n), frames, dropped)
	if dropped != 0 {
		t.Errorf("%d frames dropped by %d recorders", dropped, n)
	}
}
