package push

import (
	"fmt"
	"sort"

	"github.com/parley/parley/internal/store"
	"github.com/parley/parley/pkg/protocol"
)

// FileName is the file in the data directory that keeps the destinations
// added through the management API.
const FileName = "pushes.json"

// maxFile bounds the file (64 destinations of 1 KiB fit many times).
const maxFile = 1 << 20

// pushFile is the file's form: destination URLs by stream.
type pushFile struct {
	Push map[string][]string `json:"push"`
}

// ParseFile reads a pushes file; every stream name and URL is checked
// (errors never quote a URL).
func ParseFile(b []byte) (map[string][]string, error) {
	var f pushFile
	if err := store.Decode(b, maxFile, &f, "pushes file"); err != nil {
		return nil, err
	}
	for stream, urls := range f.Push {
		if !protocol.ValidRoom(stream) {
			return nil, fmt.Errorf("%q is not a stream name", stream)
		}
		for i, raw := range urls {
			if err := Check(raw); err != nil {
				return nil, fmt.Errorf("stream %s, push %d: %w", stream, i, err)
			}
		}
	}
	if f.Push == nil {
		f.Push = map[string][]string{}
	}
	return f.Push, nil
}

// LoadFile reads the pushes file at path; a missing file holds none.
func LoadFile(path string) (map[string][]string, error) {
	b, err := store.Read(path, maxFile)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return map[string][]string{}, nil
	}
	m, err := ParseFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// SaveFile writes the pushes file at path atomically, readable by the
// owner only: the URLs hold stream keys.
func SaveFile(path string, pushes map[string][]string) error {
	for _, v := range pushes {
		sort.Strings(v)
	}
	return store.Save(path, pushFile{Push: pushes})
}
