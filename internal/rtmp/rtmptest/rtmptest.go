// Package rtmptest plays the studio in tests: ffmpeg publishing a test
// picture and a 440 Hz tone over RTMP, as OBS would.
package rtmptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/sfu"
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
func Studio(ctx context.Context, url string) *exec.Cmd {
	return studio(ctx, "flv", url)
}

// StudioMPEGTS is the same studio muxing MPEG-TS, for SRT
// (srt://host:port?streamid=publish:<stream>).
func StudioMPEGTS(ctx context.Context, url string) *exec.Cmd { return studio(ctx, "mpegts", url) }

// StudioRTSP is the same studio pushing to rtsp://host:port/<stream>
// over transport "udp" or "tcp", or "" for ffmpeg's default (UDP, then
// TCP when the server answers 461).
func StudioRTSP(ctx context.Context, url, transport string) *exec.Cmd {
	if transport == "" {
		return studio(ctx, "rtsp", url)
	}
	return studio(ctx, "rtsp", "-rtsp_transport", transport, url)
}

func studio(ctx context.Context, format string, out ...string) *exec.Cmd {
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440",
		"-c:v", "libx264", "-tune", "zerolatency", "-g", "25", "-c:a", "aac", "-f", format}
	return exec.CommandContext(ctx, "ffmpeg", append(args, out...)...)
}

// Probe runs ffprobe on url (with these options before it, e.g.
// -rtsp_transport tcp) and returns the codec names of its streams,
// sorted.
func Probe(ctx context.Context, url string, opts ...string) ([]string, error) {
	var res struct {
		Streams []struct {
			Codec string `json:"codec_name"`
		} `json:"streams"`
	}
	if err := FFprobeJSON(ctx, &res, append(opts, "-show_entries", "stream=codec_name", url)...); err != nil {
		return nil, err
	}
	var codecs []string
	for _, s := range res.Streams {
		codecs = append(codecs, s.Codec)
	}
	slices.Sort(codecs)
	return codecs, nil
}

// FFprobeJSON runs ffprobe with args (the input last) and JSON output,
// decoding it into v; an error carries what ffprobe said.
func FFprobeJSON(ctx context.Context, v any, args ...string) error {
	cmd := exec.CommandContext(ctx, "ffprobe", append([]string{"-hide_banner", "-loglevel", "error", "-of", "json"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("ffprobe %s: %w: %s", args[len(args)-1], err, stderr.String())
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("ffprobe output %q: %w", out, err)
	}
	return nil
}

// ClosedByServer reads until the server closes the connection (EOF or a
// reset); a read timeout means it did not, and fails the test.
func ClosedByServer(t testing.TB, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server did not close the connection")
	}
}

// ConnLimit opens n connections to addr (closed when the test ends) and
// checks that the server closes one more: its per-address limit is n.
func ConnLimit(t testing.TB, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	ClosedByServer(t, extra, 10*time.Second)
	return conns
}

// SFU is an SFU on loopback for a listener under test; it closes when the
// test ends.
func SFU(t testing.TB) *sfu.SFU {
	t.Helper()
	m, err := sfu.New(sfu.Config{UDP: "127.0.0.1:0", TCP: "off", PublicIP: "127.0.0.1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
