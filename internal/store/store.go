// Package store keeps the small JSON files Parley writes at run time in
// its data directory (the IP cameras and the restreaming destinations
// added through the management APIs): read strictly and bounded, written
// atomically and readable by the owner only (they hold passwords and
// stream keys).
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Read reads the file at path; a missing file is (nil, nil). A file over
// limit bytes is refused.
func Read(path string, limit int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", path, len(b), limit)
	}
	return b, nil
}

// Decode reads one JSON object from b (at most limit bytes) into v:
// unknown fields and data after the object are refused; what ("streams
// file") names the file in errors.
func Decode(b []byte, limit int, v any, what string) error {
	if len(b) > limit {
		return fmt.Errorf("%d bytes, more than %d", len(b), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a %s: %w", what, err)
	}
	if dec.More() {
		return fmt.Errorf("not a %s: data after the object", what)
	}
	return nil
}

// Save writes v as JSON to path atomically (a temporary file renamed over
// it), readable by the owner only; the directory is created (0700) if
// needed.
func Save(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
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
