// Package recordtest reads recordings back with Debian's ffprobe for the
// recorder's tests.
package recordtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Info is what ffprobe found in a file after decoding all of it.
type Info struct {
	Duration time.Duration // the container's duration (format=duration)
	Codecs   []string      // codec names of the streams, sorted
	// Frames is the number of frames ffprobe decoded per codec
	// (-count_frames): a damaged file decodes fewer.
	Frames map[string]int
	// End is, per codec, where its stream ends (start_time + duration).
	End map[string]time.Duration
	// Errors is what ffprobe said on stderr (decode errors).
	Errors string
}

// Probe decodes path with ffprobe (-count_frames) and fails the test when
// ffprobe cannot read it at all.
func Probe(tb testing.TB, path string) Info {
	tb.Helper()
	cmd := exec.Command("ffprobe", "-hide_banner", "-loglevel", "error", "-count_frames",
		"-show_entries", "format=duration:stream=codec_name,nb_read_frames,start_time,duration", "-of", "json", path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("ffprobe %s: %v: %s", path, err, stderr.String())
	}
	var res struct {
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
		Streams []struct {
			Codec    string `json:"codec_name"`
			Frames   string `json:"nb_read_frames"`
			Start    string `json:"start_time"`
			Duration string `json:"duration"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		tb.Fatalf("ffprobe output %q: %v", out, err)
	}
	in := Info{Frames: map[string]int{}, End: map[string]time.Duration{}, Errors: stderr.String()}
	if s, err := strconv.ParseFloat(res.Format.Duration, 64); err == nil {
		in.Duration = time.Duration(s * float64(time.Second))
	}
	for _, s := range res.Streams {
		in.Codecs = append(in.Codecs, s.Codec)
		n, _ := strconv.Atoi(s.Frames)
		in.Frames[s.Codec] += n
		start, _ := strconv.ParseFloat(s.Start, 64)
		if d, err := strconv.ParseFloat(s.Duration, 64); err == nil {
			in.End[s.Codec] = time.Duration((start + d) * float64(time.Second))
		}
	}
	slices.Sort(in.Codecs)
	return in
}

// ReadOnly makes dir unwritable for the rest of the test, for root too
// (chattr +i; the test is skipped where that is not possible).
func ReadOnly(tb testing.TB, dir string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
		return
	}
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		tb.Skipf("running as root and chattr +i fails: %v %s", err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
}
