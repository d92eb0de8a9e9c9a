package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestRecordSettings: streams: entries may hold only recording options;
// the flags and their checks.
func TestRecordSettings(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "record_max_size: 50G\nstreams:\n  show:\n    record: always\n    record_format: webm\n    record_mode: keyframes\n    record_keyframe_interval: 1m\n    record_segment: 10m\n    record_segment_size: 500M\n  door:\n    source: rtsp://cam/s\n    record: always\n")
	c, err := Load([]string{"--config", good, "--record-dir", "/srv/rec", "--record-max-age", "720h", "--on-record-done", "http://hooks/rec"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Streams["show"]
	if !s.RecordAlways() || s.IsCamera() || s.RecordFormat != "webm" || s.RecordMode != "keyframes" || s.RecordKeyframeInterval.D() != time.Minute ||
		s.RecordSegment.D() != 10*time.Minute || s.RecordSegmentSize != 500<<20 {
		t.Errorf("show: %+v", s)
	}
	if !c.Streams["door"].IsCamera() || !c.Streams["door"].RecordAlways() {
		t.Errorf("door: %+v", c.Streams["door"])
	}
	if c.RecordDir != "/srv/rec" || c.RecordMaxAge.D() != 720*time.Hour || c.RecordMaxSize != 50<<30 || c.Hooks.OnRecordDone != "http://hooks/rec" {
		t.Errorf("globals: %q %v %v %q", c.RecordDir, c.RecordMaxAge, c.RecordMaxSize, c.Hooks.OnRecordDone)
	}
	if d := Default(); d.RecordDir != "recordings" || d.RecordMaxAge != 0 || d.RecordMaxSize != 0 {
		t.Errorf("defaults: %q %v %v", d.RecordDir, d.RecordMaxAge, d.RecordMaxSize)
	}
	for name, yaml := range map[string]string{
		"record":     "streams:\n  s:\n    record: sometimes\n",
		"format":     "streams:\n  s:\n    record: always\n    record_format: avi\n",
		"mode":       "streams:\n  s:\n    record: always\n    record_mode: some\n",
		"segment":    "streams:\n  s:\n    record: always\n    record_segment: -1s\n",
		"size":       "streams:\n  s:\n    record: always\n    record_segment_size: lots\n",
		"camera+bad": "streams:\n  s:\n    source: rtsp://cam/s\n    record_format: avi\n",
		"max size":   "record_max_size: -5\n",
	} {
		f := writeFile(t, dir, strings.ReplaceAll(name, " ", "_")+".yaml", yaml)
		if _, err := Load([]string{"--config", f}, noEnv, io.Discard); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, args := range [][]string{{"--record-dir", ""}, {"--record-max-age", "-1h"}, {"--on-record-done", "ftp://x"}} {
		if _, err := Load(args, noEnv, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	for in, want := range map[string]ByteSize{"0": 0, "1024": 1024, "1k": 1024, "1.5M": 3 << 19, "2GiB": 2 << 30, "1TB": 1 << 40} {
		var b ByteSize
		if err := b.Set(in); err != nil || b != want {
			t.Errorf("%q: %d, %v; want %d", in, b, err, want)
		}
	}
}

// FuzzByteSize: any text as a size is read or refused, never negative.
func FuzzByteSize(f *testing.F) {
	for _, s := range []string{"0", "1.5M", "2GiB", "1TB", "-1", "1e300G", "NaN", "Inf", "k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b ByteSize
		if err := b.Set(s); err == nil && b < 0 {
			t.Errorf("%q read as %d", s, b)
		}
	})
}
