package server_test

import (
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"github.com/parley/parley/internal/config"
)

// TestIngestInfo: GET /api/ingest names the RTMP listener's bound port and
// leaves out listeners that are off.
func TestIngestInfo(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.RTSP, c.SRT = "off", "off"; c.AuthSecret = testSecret })
	resp, err := http.Get(srv.URL() + "/api/ingest")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	rtmp, _ := got["rtmp"].(map[string]any)
	if rtmp == nil || int(rtmp["port"].(float64)) != srv.RTMPAddr().(*net.TCPAddr).Port || rtmp["publish"] != true || rtmp["read"] != true {
		t.Errorf("rtmp %v", got["rtmp"])
	}
	if got["rtsp"] != nil || got["srt"] != nil || got["auth"] != true || got["media"] != true || got["prefer_h264"] != true || got["host"] != "127.0.0.1" {
		t.Errorf("ingest info %v", got)
	}
}

// TestIngestPreferH264: with HLS and RTMP off nothing needs H.264 from
// browser publishers, and /api/ingest says so.
func TestIngestPreferH264(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.HLS, c.RTMP = "off", "off" })
	var got struct {
		PreferH264 *bool `json:"prefer_h264"`
	}
	if err := json.Unmarshal([]byte(get(t, srv.URL()+"/api/ingest")), &got); err != nil || got.PreferH264 == nil || *got.PreferH264 {
		t.Errorf("prefer_h264 %v (%v), want false", got.PreferH264, err)
	}
}
