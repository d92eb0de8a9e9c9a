package camera

import (
	"fmt"

	"github.com/parley/parley/internal/store"
	"github.com/parley/parley/pkg/protocol"
)

// FileName is the file in the data directory that keeps the streams
// added through the management API.
const FileName = "streams.json"

// maxFile bounds the streams file (thousands of cameras fit).
const maxFile = 1 << 20

// streamsFile is the file's form.
type streamsFile struct {
	Streams map[string]Source `json:"streams"`
}

// ParseStreams reads a streams file; every stream's name and settings
// are checked.
func ParseStreams(b []byte) (map[string]Source, error) {
	var f streamsFile
	if err := store.Decode(b, maxFile, &f, "streams file"); err != nil {
		return nil, err
	}
	for name, src := range f.Streams {
		if !protocol.ValidRoom(name) {
			return nil, fmt.Errorf("%q is not a stream name", name)
		}
		if err := src.Check(); err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
	}
	if f.Streams == nil {
		f.Streams = map[string]Source{}
	}
	return f.Streams, nil
}

// LoadFile reads the streams file at path; a missing file holds none.
func LoadFile(path string) (map[string]Source, error) {
	b, err := store.Read(path, maxFile)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return map[string]Source{}, nil
	}
	m, err := ParseStreams(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// SaveFile writes the streams file at path atomically, readable by the
// owner only since camera URLs may hold passwords.
func SaveFile(path string, streams map[string]Source) error {
	return store.Save(path, streamsFile{Streams: streams})
}
