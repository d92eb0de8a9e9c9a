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

	"github.com/parley/parley/internal/sfu"
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
	level := slog.LevelWarn
	if os.Getenv("SFU_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s, err := sfu.New(sfu.Config{UDP: ":0", TCP: "off", PublicIP: "127.0.0.1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{
		SFU:    s,
		Verify: verify,
		ICEServers: func(*http.Request) []webrtc.ICEServer {
			return []webrtc.ICEServer{
				{URLs: []string{"stun:127.0.0.1:3478"}},
				{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "1700000000:alice", Credential: `p"w`},
			}
		},
		MaxBody:       16 << 10,
		ReattachGrace: 500 * time.Millisecond,
		Logger:        log,
	})
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
	pc    *webrtc.PeerConnection
	video *webrtc.TrackLocalStaticRTP
	loc   string
}

func newPublisherPC(t *testing.T) *publisher {
	t.Helper()
	pc, err := clientAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "obs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	return &publisher{pc: pc, video: tr}
}

// publish POSTs the offer and applies the answer.
func (f *fixture) publish(stream string) *publisher {
	f.t.Helper()
	p := newPublisherPC(f.t)
	resp := f.do("POST", "/whip/"+stream, "application/sdp", offerFrom(f.t, p.pc))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		f.t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	p.loc = resp.Header.Get("Location")
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		f.t.Fatal(err)
	}
	return p
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
	pc      *webrtc.PeerConnection
	loc     string
	etag    string
	packets atomic.Int64
	ended   chan struct{}
}

func newViewerPC(t *testing.T) *viewer {
	t.Helper()
	pc, err := clientAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	v := &viewer{pc: pc, ended: make(chan struct{})}
	var once sync.Once
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		go func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					once.Do(func() { close(v.ended) })
					return
				}
				v.packets.Add(1)
			}
		}()
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	return v
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
	var b errorBody
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

	// Viewer with trickle: the offer goes out without candidates, which
	// follow in a PATCH.
	v := newViewerPC(t)
	offer, err := v.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	var cands []string
	var mu sync.Mutex
	gathered := make(chan struct{})
	v.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			close(gathered)
			return
		}
		mu.Lock()
		cands = append(cands, c.ToJSON().Candidate)
		mu.Unlock()
	})
	if err := v.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	resp := f.do("POST", "/whep/live", "application/sdp", offer.SDP)
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP POST: %d %s", resp.StatusCode, answer)
	}
	for h, want := range map[string]string{"Content-Type": "application/sdp", "Access-Control-Allow-Origin": "*"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	v.loc, v.etag = resp.Header.Get("Location"), resp.Header.Get("ETag")
	if !strings.HasPrefix(v.loc, "/whep/live/") || v.etag == "" {
		t.Fatalf("Location %q ETag %q", v.loc, v.etag)
	}
	links := resp.Header.Values("Link")
	if len(links) != 2 || !strings.Contains(links[1], `username="1700000000:alice"; credential="p\"w"; credential-type="password"`) {
		t.Fatalf("Link headers: %q", links)
	}
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	<-gathered
	mu.Lock()
	frag := SDPFrag{ICEUfrag: offerUfrag(offer.SDP), ICEPwd: offerPwd(offer.SDP), Media: []FragMedia{{Name: "video 9 UDP/TLS/RTP/SAVPF 96", Mid: "0", EndOfCandidates: true}}}
	for _, c := range cands {
		frag.Media[0].Candidates = append(frag.Media[0].Candidates, strings.TrimPrefix(c, "candidate:"))
	}
	mu.Unlock()
	if resp := f.do("PATCH", v.loc, "application/trickle-ice-sdpfrag", frag.String(), "If-Match", v.etag); resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PATCH trickle: %d %s", resp.StatusCode, b)
	}
	waitUntil(t, 5*time.Second, "viewer media", func() bool { return v.packets.Load() >= 20 })

	// A second publisher on a live stream is refused.
	p2 := newPublisherPC(t)
	if resp := f.do("POST", "/whip/live", "application/sdp", offerFrom(t, p2.pc)); resp.StatusCode != http.StatusConflict || errCode(t, resp) != codeConflict {
		t.Fatalf("second publisher: %d", resp.StatusCode)
	}

	// The publisher leaves; viewers end after the grace period.
	if resp := f.do("DELETE", pub.loc, "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE publisher: %d", resp.StatusCode)
	}
	// The viewer learns it from the DTLS close (its track reads end) or, if
	// that datagram is lost, from ICE.
	waitUntil(t, 10*time.Second, "viewer told the stream ended", func() bool {
		select {
		case <-v.ended:
			return true
		default:
			return v.pc.ConnectionState() != webrtc.PeerConnectionStateConnected
		}
	})
	waitUntil(t, 3*time.Second, "viewer session gone", func() bool {
		return f.do("DELETE", v.loc, "", "").StatusCode == http.StatusNotFound
	})
	if st := f.sfu.Stats(); st.Participants != 0 {
		t.Fatalf("participants left behind: %+v", st)
	}
}

func offerPwd(sdp string) string {
	for _, line := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-pwd:"); ok {
			return v
		}
	}
	return ""
}

func TestWHIPErrors(t *testing.T) {
	f := newFixture(t, func(r *http.Request, stream string, publish bool) error {
		if stream == "secret" && r.Header.Get("Authorization") != "Bearer good" {
			return errors.New("token required for stream secret")
		}
		return nil
	})
	pubPC := newPublisherPC(t)
	goodOffer := offerFrom(t, pubPC.pc)
	viewPC := newViewerPC(t)
	viewOffer := offerFrom(t, viewPC.pc)
	h265 := strings.NewReplacer("VP8/90000", "H265/90000").Replace(goodOffer)
	// Strip every other video codec so only H.265 remains.
	var lines []string
	for _, l := range strings.Split(h265, "\r\n") {
		if strings.HasPrefix(l, "a=rtpmap:") && !strings.Contains(l, "H265") && !strings.Contains(l, "rtx") {
			continue
		}
		lines = append(lines, l)
	}
	h265 = strings.Join(lines, "\r\n")

	tests := []struct {
		name, method, path, ctype, body string
		hdr                             []string
		status                          int
		code                            string
	}{
		{"malformed SDP", "POST", "/whip/a", "application/sdp", "hello", nil, 400, codeBadSDP},
		{"empty body", "POST", "/whip/a", "application/sdp", "", nil, 400, codeBadSDP},
		{"viewer offer on WHIP", "POST", "/whip/a", "application/sdp", viewOffer, nil, 400, codeBadSDP},
		{"unsupported codec", "POST", "/whip/a", "application/sdp", h265, nil, 406, codeUnsupportedCodec},
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
		resp := f.do("POST", "/whip/secret", "application/sdp", goodOffer, "Authorization", "Bearer good")
		if resp.StatusCode != http.StatusCreated {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		loc := resp.Header.Get("Location")
		frag := "a=ice-ufrag:" + offerUfrag(goodOffer) + "\r\na=ice-pwd:" + offerPwd(goodOffer) + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=end-of-candidates\r\n"
		if r := f.do("PATCH", loc, "application/trickle-ice-sdpfrag", frag, "Authorization", "Bearer good", "If-Match", `"nope"`); r.StatusCode != http.StatusPreconditionFailed {
			t.Fatalf("If-Match mismatch: %d", r.StatusCode)
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
		if r := f.do("DELETE", loc, "", "", "Authorization", "Bearer good"); r.StatusCode != http.StatusOK {
			t.Fatalf("DELETE: %d", r.StatusCode)
		}
	})

	t.Run("OPTIONS preflight", func(t *testing.T) {
		resp := f.do("OPTIONS", "/whip/a", "", "")
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d", resp.StatusCode)
		}
		for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Expose-Headers", "Accept-Post"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("missing %s", h)
			}
		}
		if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Location") {
			t.Error("Location not exposed")
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

	v := newViewerPC(t)
	resp := f.do("POST", "/whep/ice", "application/sdp", offerFrom(t, v.pc))
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP POST: %d %s", resp.StatusCode, answer)
	}
	loc, etag := resp.Header.Get("Location"), resp.Header.Get("ETag")
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "media before restart", func() bool { return v.packets.Load() >= 10 })

	offer, err := v.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(v.pc)
	if err := v.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	local := v.pc.LocalDescription().SDP
	frag, err := localFrag(local)
	if err != nil {
		t.Fatal(err)
	}
	r := f.do("PATCH", loc, "application/trickle-ice-sdpfrag", frag.String(), "If-Match", etag)
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("ICE restart: %d %s", r.StatusCode, body)
	}
	if r.Header.Get("ETag") == etag {
		t.Fatal("ETag unchanged after ICE restart")
	}
	server, err := ParseSDPFrag(string(body))
	if err != nil || server.ICEUfrag == "" || server.ICEUfrag == offerUfrag(string(answer)) {
		t.Fatalf("restart answer frag %+v (%v)", server, err)
	}
	// Apply the server's new credentials as a new answer.
	newAnswer := strings.NewReplacer(
		"a=ice-ufrag:"+offerUfrag(string(answer)), "a=ice-ufrag:"+server.ICEUfrag,
		"a=ice-pwd:"+offerPwd(string(answer)), "a=ice-pwd:"+server.ICEPwd,
	).Replace(string(answer))
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: newAnswer}); err != nil {
		t.Fatal(err)
	}
	before := v.packets.Load()
	waitUntil(t, 8*time.Second, "media after restart", func() bool { return v.packets.Load() >= before+30 })
}
