// Package rtmptest plays the studio in tests: ffmpeg publishing a test
// picture and a 440 Hz tone over RTMP, as OBS would.
package rtmptest

import (
	"context"
	"os"
	"os/exec"
	"testing"
)

// NeedFFmpeg skips the test without ffmpeg, except in CI (CI set), where
// a missing ffmpeg is a failure: scripts/test.sh installs it.
func NeedFFmpeg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffmpeg is required in CI (scripts/test.sh installs it)")
		}
		t.Skip("ffmpeg not installed")
	}
}

// Studio is ffmpeg publishing testsrc2 (H.264, a keyframe a second) and a
// 440 Hz sine (AAC) in real time to url (rtmp://host:port/live/<stream>);
// it ends with ctx. Start it with Start and wait with Wait.
func Studio(ctx context.Context, url string) *exec.Cmd { return studio(ctx, "flv", url) }

// StudioMPEGTS is the same studio muxing MPEG-TS, for SRT
// (srt://host:port?streamid=publish:<stream>).
func StudioMPEGTS(ctx context.Context, url string) *exec.Cmd { return studio(ctx, "mpegts", url) }

func studio(ctx context.Context, format, url string) *exec.Cmd {
	return exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440",
		"-c:v", "libx264", "-tune", "zerolatency", "-g", "25", "-c:a", "aac", "-f", format, url)
}
