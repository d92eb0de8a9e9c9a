package push

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestFile: what SaveFile writes LoadFile reads back, for the owner only;
// a missing file holds nothing; bad names and URLs are refused without
// the URL.
func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", FileName)
	if m, err := LoadFile(path); err != nil || len(m) != 0 {
		t.Fatalf("missing file: %v %v", m, err)
	}
	want := map[string][]string{"show": {"rtmp://a/live2/k3y", "srt://h:9000?streamid=x"}}
	if err := SaveFile(path, want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	if got, err := LoadFile(path); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %v %v", got, err)
	}
	for _, bad := range []string{`{"push":{"a b":[]}}`, `{"push":{"s":["http://h/hunter2"]}}`, `{"push":{}} x`, `{"pushes":{}}`} {
		if _, err := ParseFile([]byte(bad)); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// FuzzParseFile: any file is either refused or holds only valid names and
// URLs.
func FuzzParseFile(f *testing.F) {
	f.Add([]byte(`{"push":{"show":["rtmp://a/live2/k","srt://h:1?streamid=x"]}}`))
	f.Add([]byte(`{"push":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseFile(b)
		if err != nil {
			return
		}
		for _, urls := range m {
			for _, u := range urls {
				if Check(u) != nil {
					t.Fatalf("accepted %q", u)
				}
			}
		}
	})
}
