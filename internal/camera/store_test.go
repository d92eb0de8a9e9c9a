package camera_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/parley/parley/internal/camera"
	"github.com/parley/parley/internal/config"
)

// TestStreamsFile: what SaveFile writes LoadFile reads back; the file is
// the owner's only; a missing file holds no stream; a bad one is refused.
func TestStreamsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", camera.FileName)
	if m, err := camera.LoadFile(path); err != nil || len(m) != 0 {
		t.Fatalf("missing file: %v %v", m, err)
	}
	want := map[string]camera.Source{
		"door": {Source: "rtsp://u:p@cam/s", Transport: "tcp", OnDemand: true, IdleTimeout: config.Duration(5 * time.Second)},
		"yard": {Source: "rtsps://cam2/s"},
	}
	if err := camera.SaveFile(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := camera.LoadFile(path)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %v, %v", got, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	for _, bad := range []string{`{"streams":{"a b":{"source":"rtsp://c/s"}}}`, `{"streams":{"d":{"source":"http://c/s"}}}`, `{"x":1}`, `{} {}`, `[`} {
		if _, err := camera.ParseStreams([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// FuzzStreamsFile: any bytes give streams that pass their checks or an
// error, never a panic.
func FuzzStreamsFile(f *testing.F) {
	f.Add([]byte(`{"streams":{"door":{"source":"rtsp://u:p@cam/s","transport":"tcp","on_demand":true,"idle_timeout":"5s"}}}`))
	f.Add([]byte(`{"streams":{}}`))
	f.Add([]byte(`{"streams":{"d":{"source":"rtsp://[::1]:554/x"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := camera.ParseStreams(b)
		if err != nil {
			return
		}
		for name, s := range m {
			if err := s.Check(); err != nil {
				t.Fatalf("%s passed with %v", name, err)
			}
		}
	})
}
