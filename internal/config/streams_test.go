package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestStreams: cameras declared in the file are read; bad names, URLs and
// transports are reported without echoing the URL's password.
func TestStreams(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "data_dir: /var/lib/parley\nstreams:\n  door:\n    source: rtsp://u:p@cam/stream1\n    transport: tcp\n    on_demand: true\n    idle_timeout: 10s\n  yard:\n    source: rtsps://cam2/s\n")
	c, err := Load([]string{"--config", good}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Streams["door"]; d.Source != "rtsp://u:p@cam/stream1" || d.Transport != "tcp" || !d.OnDemand || d.IdleTimeout.D() != 10*time.Second || c.DataDir != "/var/lib/parley" {
		t.Fatalf("got %+v", c)
	}
	for name, yaml := range map[string]string{
		"bad name":      "streams:\n  'a b':\n    source: rtsp://cam/s\n",
		"http url":      "streams:\n  door:\n    source: http://u:hunter2@cam/s\n",
		"no source":     "streams:\n  door:\n    transport: tcp\n",
		"no host":       "streams:\n  door:\n    source: rtsp:///s\n",
		"transport":     "streams:\n  door:\n    source: rtsp://cam/s\n    transport: sctp\n",
		"negative idle": "streams:\n  door:\n    source: rtsp://cam/s\n    idle_timeout: -1s\n",
		"bad url":       "streams:\n  door:\n    source: \"rtsp://u:hunter2@cam:port:x/%zz\"\n",
	} {
		f := writeFile(t, dir, strings.ReplaceAll(name, " ", "_")+".yaml", yaml)
		_, err := Load([]string{"--config", f}, noEnv, io.Discard)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the password is in the error: %v", name, err)
		}
	}
	if _, err := Load([]string{"--data-dir", ""}, noEnv, io.Discard); err == nil {
		t.Error("empty --data-dir accepted")
	}
}

// TestStreamHLS: a streams: entry may hold only per-stream settings (no
// camera), hls: takes on, off or always, and HLSOf falls back to --hls.
func TestStreamHLS(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "hls.yaml", "hls: off\nstreams:\n  live:\n    hls: always\n  door:\n    source: rtsp://cam/s\n    hls: on\n")
	c, err := Load([]string{"--config", f}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Streams["live"].IsCamera() || !c.Streams["door"].IsCamera() {
		t.Errorf("IsCamera: live %v, door %v", c.Streams["live"].IsCamera(), c.Streams["door"].IsCamera())
	}
	for stream, want := range map[string]string{"live": "always", "door": "on", "other": "off"} {
		if got := c.HLSOf(stream); got != want {
			t.Errorf("HLSOf(%s) = %s, want %s", stream, got, want)
		}
	}
	if d := Default(); d.HLSOf("x") != "on" || d.HLSIdle.D() != 30*time.Second {
		t.Errorf("defaults: %s %v", d.HLSOf("x"), d.HLSIdle)
	}
	bad := writeFile(t, dir, "bad.yaml", "streams:\n  live:\n    hls: sometimes\n")
	if _, err := Load([]string{"--config", bad}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "sometimes") {
		t.Errorf("hls: sometimes: %v", err)
	}
	if _, err := Load([]string{"--hls", "maybe"}, noEnv, io.Discard); err == nil {
		t.Error("--hls maybe accepted")
	}
}

// TestStreamPush: a stream may list push destinations, with or without a
// camera source; a bad scheme or too many are refused without the URL.
func TestStreamPush(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "push.yaml", "streams:\n  show:\n    push:\n      - rtmp://a.rtmp.youtube.com/live2/k3y\n      - srt://h:9000?streamid=x\n  door:\n    source: rtsp://cam/s\n    push: [rtmps://live.example/app/k]\n")
	c, err := Load([]string{"--config", good}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Streams["show"]; s.IsCamera() || len(s.Push) != 2 || !c.Streams["door"].IsCamera() || len(c.Streams["door"].Push) != 1 {
		t.Fatalf("got %+v", c.Streams)
	}
	many := "streams:\n  s:\n    push:\n" + strings.Repeat("      - rtmp://h/a/k\n", MaxPushes+1)
	for name, yaml := range map[string]string{
		"http":     "streams:\n  s:\n    push: [\"http://h/live/hunter2\"]\n",
		"too many": many,
	} {
		f := writeFile(t, dir, strings.ReplaceAll(name, " ", "_")+".yaml", yaml)
		_, err := Load([]string{"--config", f}, noEnv, io.Discard)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the key is in the error: %v", name, err)
		}
	}
}

// TestMaxWebRTCViewers: a stream's own max_webrtc_viewers (an entry with no
// source is a published stream's settings, not a camera) overrides
// --max-webrtc-viewers; negative values are refused.
func TestMaxWebRTCViewers(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "cap.yaml", "max_webrtc_viewers: 100\nstreams:\n  town-hall:\n    max_webrtc_viewers: 5\n  door:\n    source: rtsp://cam/s\n")
	c, err := Load([]string{"--config", f}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Streams["town-hall"].IsCamera() || !c.Streams["door"].IsCamera() {
		t.Errorf("camera entries: town-hall %v, door %v", c.Streams["town-hall"].IsCamera(), c.Streams["door"].IsCamera())
	}
	for stream, want := range map[string]int{"town-hall": 5, "door": 100, "other": 100} {
		if got := c.MaxWebRTCViewersOf(stream); got != want {
			t.Errorf("MaxWebRTCViewersOf(%s) = %d, want %d", stream, got, want)
		}
	}
	if c, err := Load([]string{"--max-webrtc-viewers", "3"}, noEnv, io.Discard); err != nil || c.MaxWebRTCViewersOf("x") != 3 {
		t.Errorf("--max-webrtc-viewers 3: %v, %d", err, c.MaxWebRTCViewersOf("x"))
	}
	for name, args := range map[string][]string{
		"negative flag":       {"--max-webrtc-viewers", "-1"},
		"negative per stream": {"--config", writeFile(t, dir, "neg.yaml", "streams:\n  s:\n    max_webrtc_viewers: -2\n")},
	} {
		if _, err := Load(args, noEnv, io.Discard); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
