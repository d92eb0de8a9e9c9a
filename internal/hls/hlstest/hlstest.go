// Package hlstest reads Parley's HLS with Debian's ffprobe in tests.
package hlstest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// Stream is one stream ffprobe found, with its packets' timestamps.
type Stream struct {
	Index      int     `json:"index"`
	Type       string  `json:"codec_type"`
	Codec      string  `json:"codec_name"`
	Width      int     `json:"width"`
	Height     int     `json:"height"`
	SampleRate string  `json:"sample_rate"`
	PTS        []int64 // packet timestamps in TimeBase units, in read order
	Durations  []int64 // packet durations
	TimeBase   string  `json:"time_base"`
}

// Probe reads url (an HLS playlist) with ffprobe for about seconds of
// media (-read_intervals) and returns its streams with their packets.
func Probe(ctx context.Context, url string, seconds int) ([]Stream, error) {
	var res struct {
		Streams []Stream `json:"streams"`
		Packets []struct {
			Stream   int    `json:"stream_index"`
			PTS      *int64 `json:"pts"`
			Duration *int64 `json:"duration"`
		} `json:"packets"`
	}
	if err := rtmptest.FFprobeJSON(ctx, &res, "-read_intervals", "%+"+strconv.Itoa(seconds), "-show_streams", "-show_packets",
		"-show_entries", "packet=stream_index,pts,duration:stream=index,codec_type,codec_name,width,height,sample_rate,time_base", url); err != nil {
		return nil, err
	}
	for _, p := range res.Packets {
		for i := range res.Streams {
			if res.Streams[i].Index == p.Stream && p.PTS != nil {
				res.Streams[i].PTS = append(res.Streams[i].PTS, *p.PTS)
				var d int64
				if p.Duration != nil {
					d = *p.Duration
				}
				res.Streams[i].Durations = append(res.Streams[i].Durations, d)
			}
		}
	}
	return res.Streams, nil
}

// Gaps checks that a stream's packets follow each other: sorted by
// timestamp (B-frames reorder them), no step is over maxStep (in
// TimeBase units) nor zero. It returns the first problem, or "".
func (s Stream) Gaps(maxStep int64) string {
	if len(s.PTS) < 2 {
		return fmt.Sprintf("%d packets", len(s.PTS))
	}
	pts := append([]int64(nil), s.PTS...)
	slices.Sort(pts)
	for i := 1; i < len(pts); i++ {
		d := pts[i] - pts[i-1]
		if d <= 0 || d > maxStep {
			return fmt.Sprintf("packet %d of %d: pts %d after %d (step %d, at most %d)", i, len(pts), pts[i], pts[i-1], d, maxStep)
		}
	}
	return ""
}

// Get fetches url and returns the response (body closed) and its body.
func Get(t testing.TB, url string) (*http.Response, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return res, string(b)
}
