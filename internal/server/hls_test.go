package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/hls/hlstest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// publishH264 publishes over WHIP, as a pion peer, 25 fps of H.264 (640x360)
// and 20 ms Opus frames (silence) until the test ends.
func publishH264(ctx context.Context, t *testing.T, srv *server.Server, stream, token string) {
	t.Helper()
	rtmptest.NeedFFmpeg(t)
	aus := rtmptest.X264Frames(t, 50)
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, "v", "pub")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "pub")
	if err != nil {
		t.Fatal(err)
	}
	api, _ := client.LoopbackAPI()
	sess, err := whip.Publish(ctx, srv.URL()+"/whip/"+stream, whip.Options{API: api, Token: token}, video, audio)
	if err != nil {
		t.Fatalf("WHIP publish: %v", err)
	}
	pctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond) // the media's pace
		defer tick.Stop()
		for i := 0; ; i++ {
			if i%2 == 0 {
				var b bytes.Buffer
				for _, n := range aus[i/2%len(aus)] {
					b.Write([]byte{0, 0, 0, 1})
					b.Write(n)
				}
				if video.WriteSample(media.Sample{Data: b.Bytes(), Duration: 40 * time.Millisecond}) != nil {
					return
				}
			}
			if audio.WriteSample(media.Sample{Data: []byte{0xfc, 0xff, 0xfe}, Duration: 20 * time.Millisecond}) != nil {
				return
			}
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
		sess.Close(context.Background())
	})
	waitTracks(ctx, t, srv, stream, 2)
}

// probeHLS checks what ffprobe reads of a stream's HLS: H.264 of the
// size given and another stream of audioCodec, packets without gaps.
func probeHLS(ctx context.Context, t *testing.T, url string, w, h int, audioCodec string) {
	t.Helper()
	streams, err := hlstest.Probe(ctx, url, 3)
	if err != nil {
		t.Fatal(err)
	}
	var sawVideo, sawAudio bool
	for _, s := range streams {
		t.Logf("ffprobe: %s %s %dx%d %s, %d packets", s.Type, s.Codec, s.Width, s.Height, s.SampleRate, len(s.PTS))
		switch s.Type {
		case "video":
			sawVideo = true
			if s.Codec != "h264" || s.Width != w || s.Height != h {
				t.Errorf("video: %s %dx%d, want h264 %dx%d", s.Codec, s.Width, s.Height, w, h)
			}
			// 90 kHz, 25 fps: a frame is 3600; allow one lost frame at most.
			if gap := s.Gaps(2 * 3600); gap != "" {
				t.Errorf("video timestamps: %s", gap)
			}
		case "audio":
			sawAudio = true
			if s.Codec != audioCodec {
				t.Errorf("audio: %s, want %s", s.Codec, audioCodec)
			}
			// 20 ms Opus frames or 1024-sample AAC frames: steps at most 2 frames (in 1/sample-rate).
			if gap := s.Gaps(2 * 2048); gap != "" {
				t.Errorf("audio timestamps: %s", gap)
			}
		}
	}
	if !sawVideo || !sawAudio {
		t.Fatalf("ffprobe found %+v, want video and audio", streams)
	}
}

// TestHLSFromWHIP: ffprobe reads the LL-HLS of a WHIP-published H.264 +
// Opus stream; the stream's status counts the HLS viewer.
func TestHLSFromWHIP(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishH264(ctx, t, srv, "cam", "")
	probeHLS(ctx, t, srv.URL()+"/hls/cam/index.m3u8", 640, 360, "opus")
	st := streamStatusOf(t, srv.URL()+"/api/streams/cam")
	if st.HLS == nil || st.HLS.State != "live" || st.HLS.Viewers < 1 {
		t.Errorf("status: %+v", st.HLS)
	}
	if v := srv.HLSViewers()["cam"]; v < 1 {
		t.Errorf("HLSViewers = %d", v)
	}
	// The operators' status counts the HLS viewer (admitted through the
	// authorizer like every protocol's).
	var ops struct {
		Streams []struct {
			Name    string         `json:"name"`
			Viewers map[string]int `json:"viewers"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(get(t, srv.OpsURL()+"/api/status")), &ops); err != nil {
		t.Fatal(err)
	}
	hlsViewers := -1
	for _, st := range ops.Streams {
		if st.Name == "cam" {
			hlsViewers = st.Viewers["hls"]
		}
	}
	if hlsViewers < 1 {
		t.Errorf("/api/status: %d HLS viewers of cam (-1: no cam), want 1: %+v", hlsViewers, ops.Streams)
	}
}

// TestHLSFromRTMP: ffprobe reads the LL-HLS of a stream ffmpeg publishes
// over RTMP (H.264 + AAC, whose audio reaches HLS as Opus).
func TestHLSFromRTMP(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	studio(ctx, t, fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr()))
	waitTracks(ctx, t, srv, "s", 2)
	probeHLS(ctx, t, srv.URL()+"/hls/s/index.m3u8", 320, 240, "opus")
}

type hlsStreamStatus struct {
	HLS *struct {
		State   string   `json:"state"`
		Viewers int      `json:"viewers"`
		Error   string   `json:"error"`
		Notes   []string `json:"notes"`
	} `json:"hls"`
}

func streamStatusOf(t *testing.T, url string) hlsStreamStatus {
	t.Helper()
	var st hlsStreamStatus
	if err := json.Unmarshal([]byte(get(t, url)), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestHLSAuth: with auth on, /hls/ needs a subscribe token for the
// stream; the playlists carry ?token= into every URL, and those work.
func TestHLSAuth(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret; c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishH264(ctx, t, srv, "s", mintToken(t, "s", auth.Grants{Publish: true}))
	base := srv.URL() + "/hls/s/index.m3u8"
	for name, c := range map[string]struct {
		url  string
		want int
	}{
		"no token":     {base, http.StatusUnauthorized},
		"garbage":      {base + "?token=xyz", http.StatusUnauthorized},
		"other stream": {base + "?token=" + mintToken(t, "other", auth.Grants{Subscribe: true}), http.StatusForbidden},
		"publish only": {base + "?token=" + mintToken(t, "s", auth.Grants{Publish: true}), http.StatusForbidden},
	} {
		if res, body := hlstest.Get(t, c.url); res.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", name, res.StatusCode, body, c.want)
		}
	}
	tok := mintToken(t, "s", auth.Grants{Subscribe: true})
	res, body := hlstest.Get(t, base+"?token="+tok)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("with a token: %d %s", res.StatusCode, body)
	}
	media := regexp.MustCompile(`(?m)^video\S+`).FindString(body)
	_, body = hlstest.Get(t, srv.URL()+"/hls/s/"+media)
	part := regexp.MustCompile(`#EXT-X-PART:[^\n]*URI="([^"]+)"`).FindStringSubmatch(body)
	if part == nil || !strings.Contains(part[1], "token="+tok) {
		t.Fatalf("part URI without the token: %v\n%s", part, body)
	}
	if res, _ := hlstest.Get(t, srv.URL()+"/hls/s/"+part[1]); res.StatusCode != http.StatusOK {
		t.Errorf("part with the carried token: %d", res.StatusCode)
	}
	noTok, _, _ := strings.Cut(part[1], "?")
	if res, _ := hlstest.Get(t, srv.URL()+"/hls/s/"+noTok); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("part without a token: %d, want 401", res.StatusCode)
	}
	// Blocking requests keep the token and answer once the part exists.
	probeHLS(ctx, t, base+"?token="+tok, 640, 360, "opus")

	// A token stops working when it expires, verified tokens being kept
	// (one check per part would cost) only until then.
	short, err := auth.NewToken([]byte(testSecret), "s", "v", auth.Grants{Subscribe: true}, time.Second, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res, body := hlstest.Get(t, base+"?token="+short); res.StatusCode != http.StatusOK {
		t.Fatalf("a fresh short token: %d %s", res.StatusCode, body)
	}
	pollUntil(ctx, t, "the expired token refused", func() bool {
		res, _ := hlstest.Get(t, base+"?token="+short)
		return res.StatusCode == http.StatusUnauthorized
	})
}

// TestHLSVP8: a VP8 stream cannot be HLS: the playlist answers a clear
// error and the stream's status says why.
func TestHLSVP8(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := vp8(t)
	api, _ := client.LoopbackAPI()
	sess, err := whip.Publish(ctx, srv.URL()+"/whip/v", whip.Options{API: api}, tr)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(context.Background())
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() { stop(); <-done }()
	go func() { // keyframes (a VP8 key frame's first byte has bit 0 clear)
		defer close(done)
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(0); wctx.Err() == nil; seq++ {
			frame := []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00}
			_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 3600}, Payload: frame})
			select {
			case <-wctx.Done():
			case <-tick.C:
			}
		}
	}()
	waitTracks(ctx, t, srv, "v", 1)
	st := streamStatusOf(t, srv.URL()+"/api/streams/v")
	if st.HLS == nil || st.HLS.State != "unsupported" || !strings.Contains(st.HLS.Error, "VP8") {
		t.Errorf("status before any HLS request: %+v", st.HLS)
	}
	res, body := hlstest.Get(t, srv.URL()+"/hls/v/index.m3u8")
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, `"unsupported_codec"`) || !strings.Contains(body, "VP8") {
		t.Errorf("playlist of a VP8 stream: %d %s", res.StatusCode, body)
	}
}

// TestHLSOff: --hls off answers 404 hls_off, and a stream's hls: on
// serves that one stream anyway.
func TestHLSOff(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.HLS = "off"
		c.Streams = map[string]config.Stream{"on": {HLS: "on"}}
	})
	res, body := hlstest.Get(t, srv.URL()+"/hls/x/index.m3u8")
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body, "hls_off") {
		t.Errorf("--hls off: %d %s", res.StatusCode, body)
	}
	res, body = hlstest.Get(t, srv.URL()+"/hls/on/index.m3u8")
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body, "not_live") {
		t.Errorf("hls: on, not live: %d %s", res.StatusCode, body)
	}
}

// TestHLSAlways: a stream with hls: always has its muxer running once
// it is live, before any HLS request.
func TestHLSAlways(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.Streams = map[string]config.Stream{"s": {HLS: "always"}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	studio(ctx, t, fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr()))
	pollUntil(ctx, t, "the HLS of s live without a request", func() bool {
		st := streamStatusOf(t, srv.URL()+"/api/streams/s")
		return st.HLS != nil && st.HLS.State == "live"
	})
}

// TestHLSKeepAlive: a player's plain HTTP/1.1 keep-alive connection is
// taken over at its first HLS request (internal/httpconn) and goes back to
// net/http for anything else: one connection carries the playlists, a
// part, /healthz and more playlists, and the loop counts its answers.
func TestHLSKeepAlive(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishH264(ctx, t, srv, "ka", "")
	var dials atomic.Int32
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	fetch := func(url string) (string, http.Header) {
		t.Helper()
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: %v", url, err)
			}
			if resp.StatusCode == http.StatusServiceUnavailable && ctx.Err() == nil { // the muxer is starting
				continue
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %s %s", url, resp.Status, b)
			}
			return string(b), resp.Header
		}
	}
	base := srv.URL() + "/hls/ka/"
	master, _ := fetch(base + "index.m3u8")
	media := ""
	for _, l := range strings.Split(master, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			media, _, _ = strings.Cut(l, "?")
			break
		}
	}
	var part string
	for part == "" {
		pl, _ := fetch(base + media)
		if m := regexp.MustCompile(`URI="([^"]*_part[0-9]+\.mp4)"`).FindAllStringSubmatch(pl, -1); len(m) > 0 {
			part = m[len(m)-1][1]
		}
	}
	body, h := fetch(base + part)
	if len(body) == 0 || h.Get("Content-Type") != "video/mp4" || h.Get("Date") == "" {
		t.Fatalf("part %s: %d bytes, %v", part, len(body), h)
	}
	if health, _ := fetch(srv.URL() + "/healthz"); !strings.Contains(health, `"ok"`) {
		t.Fatalf("/healthz on the same connection: %q", health)
	}
	fetch(base + media)
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections, want 1 kept alive", n)
	}
	m := regexp.MustCompile(`(?m)^parley_hls_keepalive_requests_total (\d+)`).FindStringSubmatch(get(t, srv.OpsURL()+"/metrics"))
	if m == nil || m[1] == "0" {
		t.Errorf("parley_hls_keepalive_requests_total: %v, want the loop's answers", m)
	}
}
