package camera

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
	if len(b) > maxFile {
		return nil, fmt.Errorf("%d bytes, more than %d", len(b), maxFile)
	}
	var f streamsFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a streams file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a streams file: data after the object")
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
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Source{}, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := ParseStreams(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// SaveFile writes the streams file at path atomically (a temporary file
// renamed over it), readable by the owner only since camera URLs may hold
// passwords; the directory is created if needed.
func SaveFile(path string, streams map[string]Source) error {
	b, err := json.MarshalIndent(streamsFile{Streams: streams}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".streams-*.json")
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}
