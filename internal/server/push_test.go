package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/push"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/server"
)

// waitPush polls the source server's pushes until the one to url is in
// state want, and returns it.
func waitPush(ctx context.Context, t *testing.T, srv *server.Server, url string, want push.State) push.Status {
	t.Helper()
	var got push.Status
	// the status changes with no event a test can subscribe to from here
	pollUntil(ctx, t, "push to "+url+" "+string(want), func() bool {
		for _, st := range srv.Pushes() {
			if st.ID == push.ID(url) {
				got = st
				return st.State == want
			}
		}
		return false
	})
	return got
}

// TestPushRTMP: ffmpeg publishes stream s over RTMP to one Parley, which
// pushes it (config push:) to a second Parley's RTMP ingest as stream d,
// where a WHEP viewer gets H.264 and Opus. The second Parley restarting
// on the same port, the push backs off, resumes, and a new viewer there
// gets the stream again.
func TestPushRTMP(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dst := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	rtmpAddr := dst.RTMPAddr().String()
	to := "rtmp://" + rtmpAddr + "/live/d?token=s3cret"
	src := startServer(t, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.Streams = map[string]config.Stream{"s": {Push: []string{to}}}
	})
	if st := waitPush(ctx, t, src, to, push.Waiting); strings.Contains(st.URL, "s3cret") {
		t.Fatalf("status shows the token: %+v", st)
	}
	studio(ctx, t, fmt.Sprintf("rtmp://%s/live/s", src.RTMPAddr()))
	live := waitPush(ctx, t, src, to, push.Live)
	if live.Tracks != "H264, AAC" {
		t.Fatalf("pushing %q", live.Tracks)
	}
	watchLive(ctx, t, dst, "d")

	// The destination restarts on the same RTMP port.
	dst.Close()
	down := waitPush(ctx, t, src, to, push.Backoff)
	t.Logf("while the destination is down: %q", down.Error)
	dst = startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1"; c.RTMP = rtmpAddr })
	again := waitPush(ctx, t, src, to, push.Live)
	if again.Reconnects < 1 || again.BytesSent == 0 {
		t.Fatalf("status %+v", again)
	}
	watchLive(ctx, t, dst, "d")
}

// TestPushSRT: a stream a WHIP client publishes (H.264 and Opus, as a
// browser does), pushed (through the API) to a second Parley's SRT ingest
// as H.264 and AAC, goes live there with both tracks; a WHEP viewer gets
// its H.264.
func TestPushSRT(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dst := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	src := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	to := "srt://" + dst.SRTAddr().String() + "?streamid=publish:d2"
	if code, _, body := do(t, http.MethodPost, src.OpsURL()+"/api/streams/s/push", `{"url":"`+to+`"}`); code != http.StatusCreated {
		t.Fatalf("POST: %d %s", code, body)
	}
	publishH264(ctx, t, src, "s", "")
	if st := waitPush(ctx, t, src, to, push.Live); st.Tracks != "H264, AAC" && st.Tracks != "AAC, H264" {
		t.Fatalf("pushing %q", st.Tracks)
	}
	waitTracks(ctx, t, dst, "d2", 2)
	_, video, _ := watch(ctx, t, dst.URL()+"/whep/d2")
	waitN(ctx, t, video, 50, "H.264 at the destination")
}

// TestPushAPI: the management API lists, adds (checked, capped) and
// removes destinations; a refusing one backs off and says why; URLs are
// shown without their keys; on the main port only admin tokens may use it.
func TestPushAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "rtmp://" + ln.Addr().String() + "/app/k3y"
	ln.Close()
	fromConfig := "rtmp://127.0.0.1:1/live/cfg"
	dataDir := t.TempDir()
	mod := func(c *config.Config) {
		c.AuthSecret, c.DataDir = testSecret, dataDir
		c.Streams = map[string]config.Stream{"s": {Push: []string{fromConfig}}}
	}
	srv := startServer(t, mod)
	admin := "Bearer " + mintToken(t, "*", auth.Grants{Admin: true})
	api := srv.OpsURL() + "/api/streams/s/push"
	for name, c := range map[string]struct {
		body string
		code int
	}{
		"bad scheme": {`{"url":"http://h/live/k"}`, http.StatusBadRequest},
		"no key":     {`{"url":"rtmp://h/live"}`, http.StatusBadRequest},
		"not json":   {`url=x`, http.StatusBadRequest},
		"unknown":    {`{"url":"rtmp://h/a/k","x":1}`, http.StatusBadRequest},
		"too long":   {`{"url":"rtmp://h/a/` + strings.Repeat("k", 5000) + `"}`, http.StatusRequestEntityTooLarge},
		"duplicate":  {`{"url":"` + fromConfig + `"}`, http.StatusConflict},
	} {
		if code, _, body := do(t, http.MethodPost, api, c.body, "Authorization", admin); code != c.code {
			t.Errorf("%s: %d %s, want %d", name, code, body, c.code)
		}
	}
	code, _, body := do(t, http.MethodPost, api, `{"url":"`+closed+`"}`, "Authorization", admin)
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %s", code, body)
	}
	var added push.Status
	if err := json.Unmarshal([]byte(body), &added); err != nil || strings.Contains(body, "k3y") {
		t.Fatalf("POST answered %s (%v)", body, err)
	}
	// The stream is not live: the push waits. Nothing here publishes it,
	// so the refusal is checked in internal/push (TestRefused); here the
	// listing shows both pushes with their origin.
	waitPush(ctx, t, srv, closed, push.Waiting)
	_, _, body = do(t, http.MethodGet, api, "", "Authorization", admin)
	var list struct{ Push []push.Status }
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Push) != 2 || strings.Contains(body, "k3y") {
		t.Fatalf("GET: %s (%v)", body, err)
	}
	// The API's destinations outlive a restart (<data-dir>/pushes.json).
	srv.Close()
	srv = startServer(t, mod)
	api = srv.OpsURL() + "/api/streams/s/push"
	waitPush(ctx, t, srv, closed, push.Waiting)
	if st := srv.Pushes(); len(st) != 2 || st[0].Origin == st[1].Origin {
		t.Fatalf("after a restart: %+v", st)
	}
	_, _, metrics := do(t, http.MethodGet, srv.OpsURL()+"/metrics", "", "Authorization", admin)
	if !strings.Contains(metrics, "parley_push_destinations_waiting 2") || !strings.Contains(metrics, "parley_push_bytes_sent_total 0") {
		t.Errorf("metrics lack the pushes:\n%s", metrics)
	}
	// The status page lists them with the stream, which is not live.
	_, _, body = do(t, http.MethodGet, srv.OpsURL()+"/api/status", "", "Authorization", admin)
	var status struct {
		Streams []struct {
			Name   string
			Pushes []push.Status
		}
	}
	if err := json.Unmarshal([]byte(body), &status); err != nil || len(status.Streams) != 1 || len(status.Streams[0].Pushes) != 2 || strings.Contains(body, "k3y") {
		t.Errorf("/api/status: %s (%v)", body, err)
	}
	// Main port: admin tokens only.
	main := srv.URL() + "/api/streams/s/push"
	if code, _, _ := do(t, http.MethodGet, main, ""); code != http.StatusUnauthorized {
		t.Errorf("main port without a token: %d", code)
	}
	if code, _, _ := do(t, http.MethodGet, main, "", "Authorization", "Bearer "+mintToken(t, "s", auth.Grants{Publish: true})); code != http.StatusForbidden {
		t.Errorf("main port with a publish token: %d", code)
	}
	if code, _, _ := do(t, http.MethodGet, main, "", "Authorization", admin); code != http.StatusOK {
		t.Errorf("main port with an admin token: %d", code)
	}
	if code, _, body := do(t, http.MethodDelete, api+"/"+push.ID(fromConfig), "", "Authorization", admin); code != http.StatusConflict {
		t.Errorf("DELETE of a config push: %d %s", code, body)
	}
	if code, _, body := do(t, http.MethodDelete, api+"/"+added.ID, "", "Authorization", admin); code != http.StatusNoContent {
		t.Errorf("DELETE: %d %s", code, body)
	}
	if code, _, _ := do(t, http.MethodDelete, api+"/"+added.ID, "", "Authorization", admin); code != http.StatusNotFound {
		t.Errorf("DELETE again: %d", code)
	}
}

// TestPushWrongKey: a destination that refuses the publish (a Parley with
// auth on, given a bad token as the stream key) is retried after a
// backoff, and the status says why without the key.
func TestPushWrongKey(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dst := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret })
	to := "rtmp://" + dst.RTMPAddr().String() + "/live/d?token=wrongkey"
	src := startServer(t, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.Streams = map[string]config.Stream{"s": {Push: []string{to}}}
	})
	studio(ctx, t, fmt.Sprintf("rtmp://%s/live/s", src.RTMPAddr()))
	st := waitPush(ctx, t, src, to, push.Backoff)
	if !strings.HasPrefix(st.Error, "refused by the destination: NetStream.Publish.Unauthorized") || strings.Contains(st.Error+st.URL, "wrongkey") {
		t.Fatalf("status %+v", st)
	}
	t.Logf("status: %q", st.Error)
}
