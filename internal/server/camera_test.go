package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/camera/cameratest"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/hls/hlstest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/server"
)

// cameraServer starts a stand-in camera fed by ffmpeg and a server
// pulling it as stream "door" with the settings door gives for its URL.
func cameraServer(ctx context.Context, t *testing.T, door func(url string) config.Stream) (*server.Server, *cameratest.Camera, *proc) {
	t.Helper()
	rtmptest.NeedFFmpeg(t)
	cam := cameratest.Start(t)
	feed := refeed(ctx, t, cam)
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.Streams = map[string]config.Stream{"door": door(cam.URL())}
	})
	return srv, cam, feed
}

// refeed starts ffmpeg pushing into cam (again, for a camera back from a
// reboot) and waits until it records.
func refeed(ctx context.Context, t *testing.T, cam *cameratest.Camera) *proc {
	t.Helper()
	p := run(t, cam.Feed(ctx))
	select {
	case <-cam.Ready():
	case <-p.exited:
		t.Fatalf("ffmpeg ended: %v", p.err)
	case <-ctx.Done():
		t.Fatal("ffmpeg never recorded into the camera")
	}
	return p
}

// cameraInfo is GET /api/cameras/{name} on the ops listener.
type cameraInfo struct {
	Name, Source, Origin string
	OnDemand             bool `json:"on_demand"`
	Status               struct {
		State, Error string
		Attempts     int
	}
}

func getCamera(t *testing.T, srv *server.Server, name string, hdr ...string) (int, cameraInfo) {
	t.Helper()
	code, _, body := do(t, http.MethodGet, srv.OpsURL()+"/api/cameras/"+name, "", hdr...)
	var in cameraInfo
	_ = json.Unmarshal([]byte(body), &in)
	return code, in
}

// waitCamera polls the management API until the stream is in state.
func waitCamera(ctx context.Context, t *testing.T, srv *server.Server, name, state string) cameraInfo {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond) // the API has no push: poll it
	defer tick.Stop()
	for {
		if _, in := getCamera(t, srv, name); in.Status.State == state {
			return in
		}
		select {
		case <-ctx.Done():
			_, in := getCamera(t, srv, name)
			t.Fatalf("camera %s: state %q (%q), want %s", name, in.Status.State, in.Status.Error, state)
		case <-tick.C:
		}
	}
}

// TestCameraToWHEP: a camera declared in the configuration (H.264 + AAC
// over RTSP) is pulled; a WHEP viewer gets H.264 and Opus; the camera
// reboots (its feed killed and started again) and the same viewer session
// gets both again.
func TestCameraToWHEP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, cam, feed := cameraServer(ctx, t, func(u string) config.Stream {
		return config.Stream{Source: strings.Replace(u, "rtsp://", "rtsp://admin:s3cret@", 1), Transport: "tcp"}
	})
	in := waitCamera(ctx, t, srv, "door", "live")
	if strings.Contains(in.Source, "s3cret") || in.Origin != "config" {
		t.Fatalf("listed as %+v", in)
	}
	viewer, video, audio := watch(ctx, t, srv.URL()+"/whep/door")
	waitN(ctx, t, video, 50, "H.264")
	waitN(ctx, t, audio, 25, "Opus")

	feed.kill()
	waitCamera(ctx, t, srv, "door", "error")
	code, _, body := do(t, http.MethodGet, srv.URL()+"/api/streams/door", "")
	if code != 200 || !strings.Contains(body, `"kind":"camera"`) || !strings.Contains(body, `"state":"error"`) || strings.Contains(body, "s3cret") {
		t.Fatalf("stream status while the camera is away: %d %s", code, body)
	}
	drain(video)
	drain(audio)
	refeed(ctx, t, cam)
	waitN(ctx, t, video, 100, "H.264 after the reboot")
	waitN(ctx, t, audio, 50, "Opus after the reboot")
	if st := viewer.PeerConnection().ConnectionState().String(); st != "connected" {
		t.Fatalf("viewer state %s", st)
	}
	if _, _, m := do(t, http.MethodGet, srv.OpsURL()+"/metrics", ""); !strings.Contains(m, "parley_camera_streams_live 1") {
		t.Fatalf("metrics: %s", m)
	}
}

// TestCameraOnDemand: an on-demand camera is not pulled until a WHEP
// viewer asks for it; the viewer then plays it; once the viewer leaves the
// pull stops after the idle time.
func TestCameraOnDemand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, cam, _ := cameraServer(ctx, t, func(u string) config.Stream {
		return config.Stream{Source: u, Transport: "tcp", OnDemand: true, IdleTimeout: config.Duration(300 * time.Millisecond)}
	})
	if _, in := getCamera(t, srv, "door"); in.Status.State != "idle" || cam.Readers() != 0 {
		t.Fatalf("before any viewer: %+v, %d readers", in, cam.Readers())
	}
	viewer, video, _ := watch(ctx, t, srv.URL()+"/whep/door")
	waitN(ctx, t, video, 25, "H.264")
	if cam.Readers() != 1 {
		t.Fatalf("%d camera readers", cam.Readers())
	}
	viewer.Close(ctx)
	waitCamera(ctx, t, srv, "door", "idle")
	// A second viewer starts it again.
	_, video, _ = watch(ctx, t, srv.URL()+"/whep/door")
	waitN(ctx, t, video, 25, "H.264 from a second pull")
}

// TestCameraOnDemandHLS: an on-demand camera starts for its first HLS
// viewer too, and ffprobe reads its H.264 over HLS.
func TestCameraOnDemandHLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, cam, _ := cameraServer(ctx, t, func(u string) config.Stream {
		return config.Stream{Source: u, Transport: "tcp", OnDemand: true}
	})
	if _, in := getCamera(t, srv, "door"); in.Status.State != "idle" || cam.Readers() != 0 {
		t.Fatalf("before any viewer: %+v, %d readers", in, cam.Readers())
	}
	streams, err := hlstest.Probe(ctx, srv.URL()+"/hls/door/index.m3u8", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(streams, func(s hlstest.Stream) bool { return s.Codec == "h264" && s.Width > 0 }) {
		t.Fatalf("HLS of an on-demand camera has no H.264: %d streams", len(streams))
	}
	if cam.Readers() != 1 {
		t.Fatalf("%d camera readers", cam.Readers())
	}
}

// TestCameraOnDemandRTSP: an on-demand camera starts for its first RTSP
// reader too (VLC opening rtsp://parley/door): ffprobe's DESCRIBE starts
// the pull and it reads the camera's H.264 from Parley.
func TestCameraOnDemandRTSP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, cam, _ := cameraServer(ctx, t, func(u string) config.Stream {
		return config.Stream{Source: u, Transport: "tcp", OnDemand: true}
	})
	if _, in := getCamera(t, srv, "door"); in.Status.State != "idle" || cam.Readers() != 0 {
		t.Fatalf("before any reader: %+v, %d readers", in, cam.Readers())
	}
	got, err := rtmptest.Probe(ctx, fmt.Sprintf("rtsp://%s/door", srv.RTSPAddr()), "-rtsp_transport", "tcp")
	if err != nil || !slices.Contains(got, "h264") {
		t.Fatalf("RTSP reader of an on-demand camera: %v (%v), want H.264", got, err)
	}
	if cam.Readers() != 1 {
		t.Fatalf("%d camera readers", cam.Readers())
	}
}

// TestCameraAPI: streams added through the management API are listed,
// report their failure in words, survive a restart (the data directory),
// and are deleted; a configured stream is not deletable; with auth only
// admin tokens get in.
func TestCameraAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	refused := cameratest.RefusedURL(t)
	mod := func(c *config.Config) {
		c.DataDir = dir
		c.AuthSecret = testSecret
		c.Streams = map[string]config.Stream{"fixed": {Source: refused, OnDemand: true}}
	}
	srv := startServer(t, mod)
	admin := "Bearer " + mintToken(t, "*", auth.Grants{Admin: true})
	viewer := "Bearer " + mintToken(t, "*", auth.Grants{Subscribe: true, Publish: true})
	ops := srv.OpsURL() + "/api/cameras"
	body := `{"source":"` + strings.Replace(refused, "rtsp://", "rtsp://u:hunter2@", 1) + `","transport":"tcp"}`

	if code, _, _ := do(t, http.MethodPut, ops+"/yard", body); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _, _ := do(t, http.MethodPut, ops+"/yard", body, "Authorization", viewer); code != 403 {
		t.Fatalf("non-admin token: %d", code)
	}
	if code, _, _ := do(t, http.MethodGet, ops, "", "Authorization", viewer); code != 403 {
		t.Fatalf("non-admin list: %d", code)
	}
	for _, bad := range []string{`{"source":"http://x/y"}`, `{"source":"rtsp://x/y","transport":"sctp"}`, `{"sauce":"rtsp://x/y"}`, `[`, `{"source":"` + strings.Repeat("a", 20000) + `"}`} {
		if code, _, b := do(t, http.MethodPut, ops+"/yard", bad, "Authorization", admin); code != 400 && code != 413 {
			t.Fatalf("bad body %.40s: %d %s", bad, code, b)
		}
	}
	if code, _, b := do(t, http.MethodPut, ops+"/yard", body, "Authorization", admin); code != 201 || strings.Contains(b, "hunter2") {
		t.Fatalf("add: %d %s", code, b)
	}
	code, _, list := do(t, http.MethodGet, ops, "", "Authorization", admin)
	if code != 200 || !strings.Contains(list, `"yard"`) || !strings.Contains(list, `"fixed"`) || strings.Contains(list, "hunter2") {
		t.Fatalf("list: %d %s", code, list)
	}
	tick := time.NewTicker(20 * time.Millisecond) // the API has no push: poll it
	defer tick.Stop()
	for {
		_, in := getCamera(t, srv, "yard", "Authorization", admin)
		if in.Status.State == "error" {
			if in.Status.Error != "connection refused" {
				t.Fatalf("reason %q", in.Status.Error)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no error state: %+v", in)
		case <-tick.C:
		}
	}
	if code, _, b := do(t, http.MethodDelete, ops+"/fixed", "", "Authorization", admin); code != 409 || !strings.Contains(b, "configuration file") {
		t.Fatalf("delete a configured stream: %d %s", code, b)
	}

	// Restart: the API's stream is back.
	srv.Close()
	srv = startServer(t, mod)
	ops = srv.OpsURL() + "/api/cameras"
	if code, in := getCamera(t, srv, "yard", "Authorization", admin); code != 200 || in.Origin != "api" {
		t.Fatalf("after restart: %d %+v", code, in)
	}
	if code, _, _ := do(t, http.MethodDelete, ops+"/yard", "", "Authorization", admin); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	srv.Close()
	srv = startServer(t, mod)
	if code, _ := getCamera(t, srv, "yard", "Authorization", "Bearer "+strings.TrimPrefix(admin, "Bearer ")); code != 404 {
		t.Fatalf("deleted stream after restart: %d", code)
	}
}
