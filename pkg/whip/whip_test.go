package whip_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/sfu"
	server "github.com/parley/parley/internal/whip"
	"github.com/parley/parley/pkg/whip"
)

// fixture is the real WHIP/WHEP handler on a real SFU, all on loopback.
type fixture struct {
	url     string
	sfu     *sfu.SFU
	patches atomic.Int64 // PATCH requests the server answered 204
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	s, err := sfu.New(sfu.Config{UDP: "127.0.0.1:0", TCP: "off", PublicIP: "127.0.0.1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h, err := server.New(server.Config{
		SFU: s,
		Verify: func(r *http.Request, stream string, _ bool) error {
			if stream == "secret" && r.Header.Get("Authorization") != "Bearer good" {
				return errors.New("token required")
			}
			return nil
		},
		ICEServers: func(*http.Request) []webrtc.ICEServer {
			return []webrtc.ICEServer{
				{URLs: []string{"stun:127.0.0.1:3478"}},
				{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "1700000000:alice", Credential: `p"w`},
			}
		},
		ReattachGrace: 200 * time.Millisecond,
		Logger:        log,
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{sfu: s}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if r.Method == http.MethodPatch && rec.status == http.StatusNoContent {
			f.patches.Add(1)
		}
	}))
	t.Cleanup(func() {
		srv.Close()
		h.Close()
		_ = s.Close()
	})
	f.url = srv.URL
	return f
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func loopback() *webrtc.SettingEngine {
	se := &webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return se
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tracks are a publisher's VP8 and Opus tracks, fed until the test ends.
func tracks(t *testing.T) []webrtc.TrackLocal {
	t.Helper()
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for i := uint16(0); ; i++ {
			// Every video packet is a whole VP8 keyframe: forwarded at once.
			_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: i, Timestamp: uint32(i) * 1800},
				Payload: []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00, byte(i)}})
			_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: i, Timestamp: uint32(i) * 960}, Payload: []byte{0xf8, 0xff, 0xfe, byte(i)}})
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	return []webrtc.TrackLocal{video, audio}
}

// counter counts packets per kind and says when both kinds got n.
type counter struct {
	video, audio atomic.Int64
	n            int64
	done         chan struct{}
	fired        atomic.Bool
}

func newCounter(n int64) *counter { return &counter{n: n, done: make(chan struct{})} }

func (c *counter) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	n := &c.audio
	if tr.Kind() == webrtc.RTPCodecTypeVideo {
		n = &c.video
	}
	for {
		if _, _, err := tr.ReadRTP(); err != nil {
			return
		}
		n.Add(1)
		if c.video.Load() >= c.n && c.audio.Load() >= c.n && c.fired.CompareAndSwap(false, true) {
			close(c.done)
		}
	}
}

func (c *counter) wait(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-c.done:
	case <-ctx.Done():
		t.Fatalf("%s: video %d audio %d packets", what, c.video.Load(), c.audio.Load())
	}
}

func TestPublishPlay(t *testing.T) {
	for _, trickle := range []bool{false, true} {
		name := "complete offers"
		if trickle {
			name = "trickle"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			ctx := timeout(t)
			pub, err := whip.Publish(ctx, f.url+"/whip/live", whip.Options{SettingEngine: loopback(), Trickle: trickle}, tracks(t)...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(pub.Location(), f.url+"/whip/live/") || pub.ETag() == "" {
				t.Fatalf("Location %q ETag %q", pub.Location(), pub.ETag())
			}
			ice := pub.ICEServers()
			if len(ice) != 2 || ice[1].Username != "1700000000:alice" || ice[1].Credential != `p"w` || ice[0].URLs[0] != "stun:127.0.0.1:3478" {
				t.Fatalf("ICE servers from Link headers: %+v", ice)
			}
			if err := pub.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			got := newCounter(20)
			view, err := whip.Play(ctx, f.url+"/whep/live", whip.Options{SettingEngine: loopback(), Trickle: trickle, OnTrack: got.onTrack})
			if err != nil {
				t.Fatal(err)
			}
			got.wait(t, ctx, "viewer media")
			if n := f.patches.Load(); trickle != (n > 0) {
				t.Fatalf("trickle %v, but %d PATCH requests", trickle, n)
			}

			// Close DELETEs the resources: the server forgets them.
			if err := view.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := pub.Close(ctx); err != nil {
				t.Fatal(err)
			}
			for _, loc := range []string{pub.Location(), view.Location()} {
				req, _ := http.NewRequest(http.MethodDelete, loc, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("DELETE %s after Close: %s", loc, resp.Status)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	ctx := timeout(t)
	opts := whip.Options{SettingEngine: loopback()}
	status := func(err error) (int, string) {
		var he *whip.HTTPError
		if !errors.As(err, &he) {
			t.Fatalf("error %v (%T) is not an *HTTPError", err, err)
		}
		return he.Status, he.Code
	}

	_, err := whip.Play(ctx, f.url+"/whep/nobody", opts)
	if st, code := status(err); st != http.StatusNotFound || code != "not_live" {
		t.Fatalf("play with no publisher: %d %s", st, code)
	}
	if !strings.Contains(err.Error(), "stream nobody is not live") {
		t.Fatalf("message: %v", err)
	}

	_, err = whip.Publish(ctx, f.url+"/whip/secret", opts, tracks(t)...)
	if st, code := status(err); st != http.StatusUnauthorized || code != "unauthorized" {
		t.Fatalf("no token: %d %s", st, code)
	}
	withToken := opts
	withToken.Token = "good"
	pub, err := whip.Publish(ctx, f.url+"/whip/secret", withToken, tracks(t)...)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(ctx)
	// A second publisher is refused once the first is live; while both are
	// still connecting, the first to connect wins (and the test would race).
	if err := pub.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}

	_, err = whip.Publish(ctx, f.url+"/whip/secret", withToken, tracks(t)...)
	if st, code := status(err); st != http.StatusConflict || code != "conflict" {
		t.Fatalf("second publisher: %d %s: %v", st, code, err)
	}

	// A body that is not JSON still gives the status and its text.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer plain.Close()
	_, err = whip.Play(ctx, plain.URL+"/whep/x", opts)
	var he *whip.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || he.Code != "" || he.Message != "busy" {
		t.Fatalf("plain error: %#v", err)
	}
}

func TestRestartICE(t *testing.T) {
	f := newFixture(t)
	ctx := timeout(t)
	pub, err := whip.Publish(ctx, f.url+"/whip/ice", whip.Options{SettingEngine: loopback()}, tracks(t)...)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(ctx)
	if err := pub.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	before := newCounter(10)
	after := newCounter(0)
	var restarted atomic.Bool
	onTrack := func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		// Count into the second counter once the restart is done.
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			c := before
			if restarted.Load() {
				c = after
			}
			n := &c.audio
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				n = &c.video
			}
			n.Add(1)
			if c.video.Load() >= c.n && c.audio.Load() >= c.n && c.fired.CompareAndSwap(false, true) {
				close(c.done)
			}
		}
	}
	view, err := whip.Play(ctx, f.url+"/whep/ice", whip.Options{SettingEngine: loopback(), OnTrack: onTrack})
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close(ctx)
	before.wait(t, ctx, "media before the restart")
	etag := view.ETag()
	ufrag := remoteUfrag(view)
	if err := view.RestartICE(ctx); err != nil {
		t.Fatal(err)
	}
	if view.ETag() == etag {
		t.Fatal("ETag unchanged by the ICE restart")
	}
	if u := remoteUfrag(view); u == ufrag || u == "" {
		t.Fatalf("server ufrag %q after restart (was %q)", u, ufrag)
	}
	after.n = 30
	restarted.Store(true)
	after.wait(t, ctx, "media after the restart")
}

func remoteUfrag(s *whip.Session) string {
	for _, l := range strings.Split(s.PeerConnection().RemoteDescription().SDP, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

func TestLinkHeadersRoundTrip(t *testing.T) {
	in := []webrtc.ICEServer{
		{URLs: []string{"stun:stun.example.net"}},
		{URLs: []string{"turn:turn.example.net?transport=udp"}, Username: `u;1`, Credential: `p"w\x, y`},
	}
	got := whip.ParseLinkHeaders([]string{strings.Join(whip.LinkHeaders(in), ", "), `<https://example.net/>; rel="next"`})
	if len(got) != 2 || got[0].URLs[0] != "stun:stun.example.net" || got[0].Username != "" ||
		got[1].URLs[0] != "turn:turn.example.net?transport=udp" || got[1].Username != `u;1` || got[1].Credential != `p"w\x, y` {
		t.Fatalf("%+v", got)
	}
	if got := whip.ParseLinkHeaders([]string{`<stun:a>; rel=ice-server`, `stun:b; rel="ice-server"`, `<stun:c>; rel="ice-server"; username="unterminated`}); len(got) != 1 || got[0].URLs[0] != "stun:a" {
		t.Fatalf("tokens and junk: %+v", got)
	}
}
