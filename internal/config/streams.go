package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Stream is an IP camera (or any RTSP server) Parley pulls a stream from
// (streams: in the file, or added through the management API).
type Stream struct {
	// Source is rtsp:// or rtsps://, with user:password@ when the camera
	// wants them.
	Source string `yaml:"source" json:"source"`
	// Transport is auto (UDP, then TCP when no packet arrives), tcp or udp.
	Transport string `yaml:"transport" json:"transport,omitempty"`
	// OnDemand pulls only while someone watches: the first viewer starts
	// the pull, IdleTimeout without viewers stops it.
	OnDemand bool `yaml:"on_demand" json:"on_demand,omitempty"`
	// IdleTimeout is how long an on-demand pull runs with no viewer; 0
	// means the default (30 s).
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout,omitempty"`

	// Per-stream settings of a stream published to Parley (WHIP, RTMP,
	// SRT, RTSP) or pulled from a camera: an entry may hold only these.
	//
	// MaxWebRTCViewers caps the stream's WebRTC (WHEP, /w/) viewers; past it
	// WHEP answers 503 "webrtc_viewer_limit" and the watch page plays HLS.
	// 0 means the server's --max-webrtc-viewers. The camera API does not
	// carry it (json "-"): it is set in the configuration file.
	MaxWebRTCViewers int `yaml:"max_webrtc_viewers" json:"-"`

	// HLS (internal/hls): "" (the --hls default), "on" (the muxer starts
	// with the first HLS request), "always" (it runs whenever the stream
	// is live) or "off".
	HLS string `yaml:"hls" json:"-"`

	// Recording (internal/record; record.go): record: always records
	// every publish of the stream. Config file only: the cameras API does
	// not take them.
	Record                 string   `yaml:"record" json:"-"`                   // "always": record every publish; "" (off): by API only
	RecordFormat           string   `yaml:"record_format" json:"-"`            // mp4, webm, or "" (WebM for VP8 video, else MP4)
	RecordMode             string   `yaml:"record_mode" json:"-"`              // all (default) or keyframes
	RecordKeyframeInterval Duration `yaml:"record_keyframe_interval" json:"-"` // keyframes mode: at most one keyframe per interval
	RecordSegment          Duration `yaml:"record_segment" json:"-"`           // a new file after this long (at a keyframe); 0: one file per publish
	RecordSegmentSize      ByteSize `yaml:"record_segment_size" json:"-"`      // a new file past this size; 0: no limit

	// Push (restreaming, internal/push) lists rtmp://, rtmps:// and srt://
	// destinations the stream is pushed to while it is live (the push API
	// adds others; not through the camera API, hence no JSON).
	Push []string `yaml:"push" json:"-"`
}

// IsCamera reports whether the entry is an IP camera to pull (it has a
// camera's setting), not only per-stream settings.
func (s Stream) IsCamera() bool {
	return s.Source != "" || s.Transport != "" || s.OnDemand || s.IdleTimeout != 0
}

// CheckSettings checks an entry of streams: in the file: its per-stream
// settings, and the camera's when it is one.
func (s Stream) CheckSettings() error {
	switch s.HLS {
	case "", "on", "off", "always":
	default:
		return fmt.Errorf("hls %q is not on, off or always", s.HLS)
	}
	if err := s.checkRecord(); err != nil {
		return err
	}
	if err := s.checkPush(); err != nil {
		return err
	}
	if s.MaxWebRTCViewers < 0 {
		return errors.New("max_webrtc_viewers must be >= 0 (0: the server's --max-webrtc-viewers)")
	}
	if s.IsCamera() {
		return s.Check()
	}
	return nil
}

// Check reports what is wrong with a stream's settings; the error never
// contains the source URL (it may hold a password).
func (s Stream) Check() error {
	u, err := url.Parse(s.Source)
	switch {
	case s.Source == "":
		return errors.New("source is required (rtsp://[user:password@]host[:port]/path)")
	case err != nil:
		return errors.New("source is not a URL")
	case u.Scheme != "rtsp" && u.Scheme != "rtsps":
		return errors.New("source must be an rtsp:// or rtsps:// URL")
	case u.Opaque != "" || u.Hostname() == "":
		return errors.New("source has no host (rtsp://host[:port]/path)")
	}
	switch s.Transport {
	case "", "auto", "tcp", "udp":
	default:
		return fmt.Errorf("transport %q is not auto, tcp or udp", s.Transport)
	}
	if s.IdleTimeout < 0 {
		return errors.New("idle_timeout must be >= 0")
	}
	return nil
}

// --- restreaming (internal/push) ---

// MaxPushes bounds a stream's push destinations in the file.
const MaxPushes = 8

// checkPush checks the push list's shape (the restreamer checks each URL
// fully when it starts); errors never quote a URL: it holds the stream key.
func (s Stream) checkPush() error {
	if len(s.Push) > MaxPushes {
		return fmt.Errorf("push: %d destinations, at most %d", len(s.Push), MaxPushes)
	}
	for i, raw := range s.Push {
		if !strings.HasPrefix(raw, "rtmp://") && !strings.HasPrefix(raw, "rtmps://") && !strings.HasPrefix(raw, "srt://") {
			return fmt.Errorf("push[%d]: must be an rtmp://, rtmps:// or srt:// URL", i)
		}
	}
	return nil
}
