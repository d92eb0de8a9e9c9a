package record

import (
	"bytes"
	"testing"
	"time"
)

// opusFile is an audio-only fragmented MP4 of n 20 ms frames.
func opusFile(tb testing.TB, n int, close bool) []byte {
	var buf bytes.Buffer
	m, err := newMP4Muxer(&buf, []Track{{Kind: "audio", Codec: "Opus", ClockRate: 48000, Channels: 2}})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if err := m.WriteFrame(Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Key: true, AU: [][]byte{opusSilence}}); err != nil {
			tb.Fatal(err)
		}
	}
	if close {
		if err := m.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestMP4Duration(t *testing.T) {
	b := opusFile(t, 150, true)
	if d, err := mp4Duration(bytes.NewReader(b), int64(len(b))); err != nil || d != 3*time.Second {
		t.Errorf("closed: %v, %v; want 3s", d, err)
	}
	b = opusFile(t, 150, false) // the last second is not written yet
	if d, err := mp4Duration(bytes.NewReader(b), int64(len(b))); err != nil || d < 1900*time.Millisecond || d > 2*time.Second {
		t.Errorf("unclosed: %v, %v; want 2 s", d, err)
	}
	cut := b[:len(b)-10] // killed in the middle of a fragment: the ones before count
	if d, err := mp4Duration(bytes.NewReader(cut), int64(len(cut))); err != nil || d < time.Second || d > 2*time.Second {
		t.Errorf("cut: %v, %v; want 1-2 s", d, err)
	}
}

// FuzzMP4Duration: any bytes as a recording never panic nor hang.
func FuzzMP4Duration(f *testing.F) {
	f.Add(opusFile(f, 120, true))
	f.Add([]byte("\x00\x00\x00\x08moov\x00\x00\x00\x01moof\x00\x00\x00\x00\x00\x00\x00\x10"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = mp4Duration(bytes.NewReader(b), int64(len(b)))
	})
}

// FuzzWebMDuration: any bytes as a WebM never panic.
func FuzzWebMDuration(f *testing.F) {
	f.Add([]byte("\x1a\x45\xdf\xa3\x44\x89\x88\x40\x8f\x40\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = webmDuration(bytes.NewReader(b), int64(len(b)))
	})
}
