package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Recording settings (internal/record): the global ones are Config's
// RecordDir, RecordMaxAge and RecordMaxSize; each stream's are Stream's
// Record* fields.

// validateRecord checks the global recording settings.
func (c *Config) validateRecord(bad func(string, ...any)) {
	if strings.TrimSpace(c.RecordDir) == "" {
		bad("record-dir: must not be empty")
	}
	if c.RecordMaxAge < 0 {
		bad("record-max-age: must be >= 0")
	}
	if c.RecordMaxSize < 0 {
		bad("record-max-size: must be >= 0")
	}
}

// checkRecord checks a stream's recording settings.
func (s Stream) checkRecord() error {
	var errs []error
	switch s.Record {
	case "", "always", "off":
	default:
		errs = append(errs, fmt.Errorf("record %q is not always or off", s.Record))
	}
	switch s.RecordFormat {
	case "", "mp4", "webm":
	default:
		errs = append(errs, fmt.Errorf("record_format %q is not mp4 or webm", s.RecordFormat))
	}
	switch s.RecordMode {
	case "", "all", "keyframes":
	default:
		errs = append(errs, fmt.Errorf("record_mode %q is not all or keyframes", s.RecordMode))
	}
	if s.RecordKeyframeInterval < 0 || s.RecordSegment < 0 || s.RecordSegmentSize < 0 {
		errs = append(errs, errors.New("record_keyframe_interval, record_segment and record_segment_size must be >= 0"))
	}
	return errors.Join(errs...)
}

// ByteSize is a size in bytes that reads "500M", "10G" or "1T" (powers
// of 1024; a trailing B or iB is allowed) as well as plain bytes.
type ByteSize int64

// Set parses a size (for flag.Value).
func (b *ByteSize) Set(s string) error {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || !(v >= 0) || v*float64(mult) > 1<<62 { // NaN fails v >= 0
		return fmt.Errorf("%q is not a size (bytes, or 500M, 10G, 1T)", s)
	}
	*b = ByteSize(v * float64(mult))
	return nil
}

// String formats the size in bytes.
func (b ByteSize) String() string { return strconv.FormatInt(int64(b), 10) }

// UnmarshalText lets YAML read sizes as strings or numbers.
func (b *ByteSize) UnmarshalText(t []byte) error { return b.Set(string(t)) }

// MarshalText writes sizes as numbers of bytes.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// RecordAlways reports whether a stream is recorded from config.
func (s Stream) RecordAlways() bool { return s.Record == "always" }

// RecordSettings are a stream's recording options as plain values.
func (s Stream) RecordSettings() (format, mode string, keyframeInterval, segment time.Duration, segmentSize int64) {
	return s.RecordFormat, s.RecordMode, s.RecordKeyframeInterval.D(), s.RecordSegment.D(), int64(s.RecordSegmentSize)
}
