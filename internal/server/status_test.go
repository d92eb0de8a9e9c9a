package server_test

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
)

// TestStatus: the operators' status shows an RTMP-published stream with
// its source, codecs, bitrate and an RTMP player among its viewers; on the
// main port it is for admin tokens only; the page and its files are served
// on the operations listener.
func TestStatus(t *testing.T) {
	srv, ctx, base := authStudio(t)
	run(t, exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-i",
		base+"?token="+mintToken(t, "s", auth.Grants{Subscribe: true}), "-f", "null", "-"))

	admin := "Bearer " + mintToken(t, "*", auth.Grants{Admin: true})
	type report struct {
		Streams []struct {
			Name    string
			Live    bool
			Source  string
			Bitrate uint64
			Tracks  []struct{ Kind, Codec string }
			Viewers map[string]int
		}
	}
	var st report
	for {
		code, _, body := do(t, "GET", srv.OpsURL()+"/api/status", "", "Authorization", admin)
		if code != http.StatusOK {
			t.Fatalf("ops /api/status: %d %s", code, body)
		}
		st = report{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Streams) == 1 && st.Streams[0].Viewers["rtmp"] == 1 && st.Streams[0].Bitrate > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the status never showed the stream with its RTMP player: %s", body)
		case <-time.After(100 * time.Millisecond): // polling the status
		}
	}
	s := st.Streams[0]
	if s.Name != "s" || !s.Live || s.Source != "rtmp" || len(s.Tracks) != 2 || s.Tracks[0].Codec != "H264" || s.Tracks[1].Codec != "opus" {
		t.Fatalf("stream %+v", s)
	}

	for name, c := range map[string]struct {
		hdr  []string
		code int
	}{
		"no token":        {nil, http.StatusUnauthorized},
		"subscribe token": {[]string{"Authorization", "Bearer " + mintToken(t, "s", auth.Grants{Subscribe: true})}, http.StatusForbidden},
		"admin token":     {[]string{"Authorization", admin}, http.StatusOK},
	} {
		if code, _, body := do(t, "GET", srv.URL()+"/api/status", "", c.hdr...); code != c.code {
			t.Errorf("main port, %s: %d %s, want %d", name, code, body, c.code)
		}
	}
	for _, p := range []string{"/status", "/app/status.js", "/app/ui.js", "/status.css"} {
		if code, _, body := do(t, "GET", srv.OpsURL()+p, ""); code != http.StatusOK || len(body) == 0 {
			t.Errorf("ops %s: %d", p, code)
		}
	}
	code, _, page := do(t, "GET", srv.OpsURL()+"/status", "")
	if !strings.Contains(page, "<h1>Server status</h1>") {
		t.Errorf("ops /status: %d, not the status page", code)
	}
	// What the page loads (content-addressed URLs, /s/<hash>/…) is there too.
	refs := regexp.MustCompile(`<(?:link|script)\b[^>]*?\b(?:href|src)="(/s/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Errorf("ops /status loads %d content-addressed files", len(refs))
	}
	for _, m := range refs {
		if code, _, body := do(t, "GET", srv.OpsURL()+m[1], ""); code != http.StatusOK || len(body) == 0 {
			t.Errorf("ops %s: %d", m[1], code)
		}
	}
}

// TestStatusOpenServer: an open server's main port does not show the
// status (it is on the operations listener).
func TestStatusOpenServer(t *testing.T) {
	srv := startServer(t, nil)
	if code, _, _ := do(t, "GET", srv.URL()+"/api/status", ""); code != http.StatusNotFound {
		t.Fatalf("main port /api/status on an open server: %d", code)
	}
	if code, _, body := do(t, "GET", srv.OpsURL()+"/api/status", ""); code != http.StatusOK || !strings.Contains(body, `"streams":[]`) {
		t.Fatalf("ops /api/status: %d %s", code, body)
	}
}
