package whip

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/sfu"
	whipclient "github.com/parley/parley/pkg/whip"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

type fixture struct {
	t   *testing.T
	sfu *sfu.SFU
	h   *Handler
	srv *httptest.Server
}

func newFixture(t *testing.T, verify func(*http.Request, string, bool) error) *fixture {
	t.Helper()
	return newFixtureConfig(t, func(c *Config) { c.Verify = verify })
}

// newFixtureConfig is newFixture with the handler's config adjusted by mod.
func newFixtureConfig(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("SFU_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s, err := sfu.New(sfu.Config{UDP: ":0", TCP: "off", PublicIP: "127.0.0.1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		SFU: s,
		ICEServers: func(*http.Request) []webrtc.ICEServer {
			return []webrtc.ICEServer{
				{URLs: []string{"stun:127.0.0.1:3478"}},
				{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "1700000000:alice", Credential: `p"w`},
			}
		},
		MaxBody:       16 << 10,
		ReattachGrace: 500 * time.Millisecond,
		Logger:        log,
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		h.Close()
		_ = s.Close()
	})
	return &fixture{t: t, sfu: s, h: h, srv: srv}
}

func (f *fixture) do(method, path, ctype, body string, hdr ...string) *http.Response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func clientAPI() *webrtc.API {
	me := &webrtc.MediaEngine{}
	_ = me.RegisterDefaultCodecs()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
}

// offerFrom makes a complete (non-trickle) offer.
func offerFrom(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	return pc.LocalDescription().SDP
}

type publisher struct {
	sess  *whipclient.Session
	video *webrtc.TrackLocalStaticRTP
}

func loopback() *webrtc.SettingEngine {
	se := &webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	return se
}

func vp8Track(t *testing.T) *webrtc.TrackLocalStaticRTP {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "obs")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// publish starts a WHIP session with a VP8 track.
func (f *fixture) publish(stream string) *publisher {
	f.t.Helper()
	tr := vp8Track(f.t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := whipclient.Publish(ctx, f.srv.URL+"/whip/"+stream, whipclient.Options{SettingEngine: loopback()}, tr)
	if err != nil {
		f.t.Fatalf("publish: %v", err)
	}
	f.t.Cleanup(func() { _ = sess.PeerConnection().Close() })
	return &publisher{sess: sess, video: tr}
}

// run sends 30 fps VP8-shaped packets, keyframe every 15 frames.
func (p *publisher) run(ctx context.Context) {
	tk := time.NewTicker(33 * time.Millisecond)
	defer tk.Stop()
	var seq uint16
	for i := 0; ; i++ {
		payload := []byte{0x10, 0x01, byte(i), byte(i >> 8)}
		if i%15 == 0 {
			payload[1] = 0x00
		}
		_ = p.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(i) * 3000, Marker: true}, Payload: payload})
		seq++
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

type viewer struct {
	sess    *whipclient.Session
	packets atomic.Int64
	ended   chan struct{}
	once    sync.Once
}

func (v *viewer) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	for {
		if _, _, err := tr.ReadRTP(); err != nil {
			v.once.Do(func() { close(v.ended) })
			return
		}
		v.packets.Add(1)
	}
}

// play starts a WHEP session of video and audio.
func (f *fixture) play(stream string, trickle bool) *viewer {
	f.t.Helper()
	v := &viewer{ended: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := whipclient.Play(ctx, f.srv.URL+"/whep/"+stream, whipclient.Options{SettingEngine: loopback(), Trickle: trickle, OnTrack: v.onTrack})
	if err != nil {
		f.t.Fatalf("play: %v", err)
	}
	f.t.Cleanup(func() { _ = sess.PeerConnection().Close() })
	v.sess = sess
	return v
}

// viewerOffer is a complete WHEP offer, for requests sent by hand.
func viewerOffer(t *testing.T) string {
	t.Helper()
	pc, err := clientAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	return offerFrom(t, pc)
}

// publisherOffer is a complete WHIP offer of one VP8 track.
func publisherOffer(t *testing.T) string {
	t.Helper()
	pc, err := clientAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromTrack(vp8Track(t), webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	return offerFrom(t, pc)
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func errCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b httperr.Body
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	return b.Error.Code
}

func TestWHIPToWHEP(t *testing.T) {
	f := newFixture(t, nil)
	pub := f.publish("live")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.run(ctx)

	// A viewer with trickle: the offer goes out without candidates, which
	// follow in a PATCH.
	v := f.play("live", true)
	if !strings.HasPrefix(v.sess.Location(), f.srv.URL+"/whep/live/") || v.sess.ETag() == "" {
		t.Fatalf("Location %q ETag %q", v.sess.Location(), v.sess.ETag())
	}
	if ice := v.sess.ICEServers(); len(ice) != 2 || ice[1].Username != "1700000000:alice" || ice[1].Credential != `p"w` {
		t.Fatalf("ICE servers from Link headers: %+v", ice)
	}
	waitUntil(t, 5*time.Second, "viewer media", func() bool { return v.packets.Load() >= 20 })

	// A second publisher on a live stream is refused.
	_, err := whipclient.Publish(ctx, f.srv.URL+"/whip/live", whipclient.Options{SettingEngine: loopback()}, vp8Track(t))
	var he *whipclient.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusConflict || he.Code != codeConflict {
		t.Fatalf("second publisher: %v", err)
	}

	// The publisher leaves; viewers end after the grace period.
	if err := pub.sess.Close(ctx); err != nil {
		t.Fatalf("closing the publisher: %v", err)
	}
	// The viewer learns it from the DTLS close (its track reads end) or, if
	// that datagram is lost, from ICE.
	waitUntil(t, 10*time.Second, "viewer told the stream ended", func() bool {
		select {
		case <-v.ended:
			return true
		default:
			return v.sess.PeerConnection().ConnectionState() != webrtc.PeerConnectionStateConnected
		}
	})
	loc := strings.TrimPrefix(v.sess.Location(), f.srv.URL)
	waitUntil(t, 3*time.Second, "viewer session gone", func() bool {
		return f.do("DELETE", loc, "", "").StatusCode == http.StatusNotFound
	})
	if st := f.sfu.Stats(); st.Participants != 0 {
		t.Fatalf("participants left behind: %+v", st)
	}
}

func TestWHIPErrors(t *testing.T) {
	f := newFixture(t, func(r *http.Request, stream string, publish bool) error {
		if stream == "secret" && r.Header.Get("Authorization") != "Bearer good" {
			return errors.New("token required for stream secret")
		}
		return nil
	})
	goodOffer := publisherOffer(t)
	viewOffer := viewerOffer(t)
	mpeg4 := strings.NewReplacer("VP8/90000", "MP4V-ES/90000").Replace(goodOffer)
	// Strip every other video codec so only MPEG-4 Part 2 remains.
	var lines []string
	for _, l := range strings.Split(mpeg4, "\r\n") {
		if strings.HasPrefix(l, "a=rtpmap:") && !strings.Contains(l, "MP4V-ES") && !strings.Contains(l, "rtx") {
			continue
		}
		lines = append(lines, l)
	}
	mpeg4 = strings.Join(lines, "\r\n")

	tests := []struct {
		name, method, path, ctype, body string
		hdr                             []string
		status                          int
		code                            string
	}{
		{"malformed SDP", "POST", "/whip/a", "application/sdp", "hello", nil, 400, codeBadSDP},
		{"empty body", "POST", "/whip/a", "application/sdp", "", nil, 400, codeBadSDP},
		{"viewer offer on WHIP", "POST", "/whip/a", "application/sdp", viewOffer, nil, 400, codeBadSDP},
		{"unsupported codec", "POST", "/whip/a", "application/sdp", mpeg4, nil, 406, codeUnsupportedCodec},
		{"not live", "POST", "/whep/nobody", "application/sdp", viewOffer, nil, 404, codeNotLive},
		{"wrong content type", "POST", "/whip/a", "text/plain", goodOffer, nil, 415, codeMediaType},
		{"too large", "POST", "/whip/a", "application/sdp", strings.Repeat("a", 17<<10), nil, 413, codeTooLarge},
		{"wrong method", "GET", "/whip/a", "", "", nil, 405, codeMethod},
		{"wrong method on session", "PUT", "/whip/a/xyz", "", "", nil, 405, codeMethod},
		{"unknown session PATCH", "PATCH", "/whip/a/xyz", "application/trickle-ice-sdpfrag", "", nil, 404, codeNotFound},
		{"unknown session DELETE", "DELETE", "/whep/a/xyz", "", "", nil, 404, codeNotFound},
		{"bad stream name", "POST", "/whip/a%20b", "application/sdp", goodOffer, nil, 404, codeNotFound},
		{"unauthorized", "POST", "/whip/secret", "application/sdp", goodOffer, nil, 401, codeUnauthorized},
		{"unauthorized viewer", "POST", "/whep/secret", "application/sdp", viewOffer, []string{"Authorization", "Bearer bad"}, 401, codeUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.do(tc.method, tc.path, tc.ctype, tc.body, tc.hdr...)
			if resp.StatusCode != tc.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if got := errCode(t, resp); got != tc.code {
				t.Fatalf("code %q, want %q", got, tc.code)
			}
			switch tc.status {
			case 405:
				if resp.Header.Get("Allow") == "" {
					t.Error("405 without Allow")
				}
			case 401:
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Error("401 without WWW-Authenticate: Bearer")
				}
			}
		})
	}

	t.Run("authorized publish and If-Match", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sess, err := whipclient.Publish(ctx, f.srv.URL+"/whip/secret", whipclient.Options{SettingEngine: loopback(), Token: "good"}, vp8Track(t))
		if err != nil {
			t.Fatal(err)
		}
		defer sess.PeerConnection().Close()
		loc := strings.TrimPrefix(sess.Location(), f.srv.URL)
		offer := sess.PeerConnection().LocalDescription().SDP
		frag := "a=ice-ufrag:" + offerUfrag(offer) + "\r\na=ice-pwd:" + offerPwd(offer) + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=end-of-candidates\r\n"
		if r := f.do("PATCH", loc, "application/trickle-ice-sdpfrag", frag, "Authorization", "Bearer good", "If-Match", `"nope"`); r.StatusCode != http.StatusPreconditionFailed {
			t.Fatalf("If-Match mismatch: %d", r.StatusCode)
		}
		if r := f.do("PATCH", loc, "application/trickle-ice-sdpfrag", frag, "Authorization", "Bearer good", "If-Match", sess.ETag()); r.StatusCode != http.StatusNoContent {
			t.Fatalf("If-Match with the ETag: %d", r.StatusCode)
		}
		if r := f.do("PATCH", loc, "application/trickle-ice-sdpfrag", "garbage", "Authorization", "Bearer good"); r.StatusCode != http.StatusBadRequest {
			t.Fatalf("bad sdpfrag: %d", r.StatusCode)
		}
		if r := f.do("PATCH", loc, "application/sdp", frag, "Authorization", "Bearer good"); r.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("PATCH content type: %d", r.StatusCode)
		}
		if r := f.do("DELETE", loc, "", ""); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("DELETE without token: %d", r.StatusCode)
		}
		if err := sess.Close(ctx); err != nil {
			t.Fatalf("DELETE with the token: %v", err)
		}
	})

	t.Run("OPTIONS preflight", func(t *testing.T) {
		const page = "http://localhost:5173"
		resp := f.do("OPTIONS", "/whip/a", "", "", "Origin", page)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d", resp.StatusCode)
		}
		for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Expose-Headers", "Accept-Post"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("missing %s", h)
			}
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != page {
			t.Errorf("Access-Control-Allow-Origin %q, want the page's origin %q (never *)", got, page)
		}
		if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Location") {
			t.Error("Location not exposed")
		}
	})

	t.Run("foreign origin", func(t *testing.T) {
		for _, m := range []string{"OPTIONS", "POST"} {
			resp := f.do(m, "/whip/a", "application/sdp", goodOffer, "Origin", "http://evil.example")
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s from a foreign page: %d, Access-Control-Allow-Origin %q", m, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
			}
		}
	})
}

// TestICERestart restarts ICE on a WHEP session through PATCH and checks
// that media keeps flowing over the new credentials.
func TestICERestart(t *testing.T) {
	f := newFixture(t, nil)
	pub := f.publish("ice")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.run(ctx)

	v := f.play("ice", false)
	waitUntil(t, 5*time.Second, "media before restart", func() bool { return v.packets.Load() >= 10 })
	etag := v.sess.ETag()
	answer := v.sess.PeerConnection().RemoteDescription().SDP
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if err := v.sess.RestartICE(rctx); err != nil {
		t.Fatalf("ICE restart: %v", err)
	}
	if v.sess.ETag() == etag {
		t.Fatal("ETag unchanged after ICE restart")
	}
	if u := offerUfrag(v.sess.PeerConnection().RemoteDescription().SDP); u == "" || u == offerUfrag(answer) {
		t.Fatalf("server ufrag %q after the restart", u)
	}
	before := v.packets.Load()
	waitUntil(t, 8*time.Second, "media after restart", func() bool { return v.packets.Load() >= before+30 })
}

func offerPwd(sdp string) string {
	for _, line := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-pwd:"); ok {
			return v
		}
	}
	return ""
}

// A publisher that comes back within the grace continues the same stream
// for WHEP viewers: their session and track go on, without a new offer.
func TestPublisherReturnsWithinGrace(t *testing.T) {
	f := newFixture(t, nil)
	f.h.cfg.ReattachGrace = 20 * time.Second // the viewer must not expire on a loaded machine
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := f.publish("back")
	actx, stopA := context.WithCancel(ctx)
	go a.run(actx)
	v := f.play("back", false)
	waitUntil(t, 10*time.Second, "viewer media", func() bool { return v.packets.Load() >= 20 })

	stopA()
	if err := a.sess.Close(ctx); err != nil {
		t.Fatal(err)
	}
	room, _ := f.sfu.LookupRoom(sfu.Streams, "back")
	waitUntil(t, 10*time.Second, "the first publisher's track gone", func() bool { return len(room.Tracks()) == 0 })
	before := v.packets.Load()

	b := f.publish("back")
	go b.run(ctx)
	waitUntil(t, 10*time.Second, "media from the returning publisher", func() bool { return v.packets.Load() >= before+20 })
	select {
	case <-v.ended:
		t.Fatal("the viewer's track ended across the restart")
	default:
	}
	if n := len(room.Participants()); n != 2 {
		t.Fatalf("%d participants, want the new publisher and the same viewer", n)
	}
}

func TestValidStream(t *testing.T) {
	for s, want := range map[string]bool{"cam1": true, "a.b_c-d": true, "x": true, "_x": true, "-x": true,
		"": false, ".": false, "..": false, ".hidden": false, "a/b": false, "a b": false, "ü": false,
		strings.Repeat("a", 64): true, strings.Repeat("a", 65): false} {
		if ValidStream(s) != want {
			t.Errorf("ValidStream(%q) = %v", s, !want)
		}
	}
}
