// Package tap is a placeholder with the documented API of the lead's
// internal/tap (a stream's media as access units), so internal/hls builds
// before it lands on main. It is removed before merging main.
package tap

import (
	"context"
	"errors"
	"time"
)

// ErrNotLive is Open's answer for a stream with no publisher.
var ErrNotLive = errors.New("tap: stream not live")

// Track is one track of a reader.
type Track struct {
	Kind      string
	Codec     string
	ClockRate int
	Channels  int
	Params    [][]byte
}

// Frame is one access unit.
type Frame struct {
	Track int
	PTS   time.Duration
	NTP   time.Time
	Key   bool
	AU    [][]byte
}

// Options of a reader.
type Options struct {
	AAC    bool
	Tracks []string
	Queue  int
}

// Reader reads one stream.
type Reader struct{}

// Tracks of the reader.
func (r *Reader) Tracks() []Track { return nil }

// Read the next frame.
func (r *Reader) Read(ctx context.Context) (Frame, error) { return Frame{}, ErrNotLive }

// Close the reader.
func (r *Reader) Close() {}
