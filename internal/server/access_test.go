package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// hookEvent is what a hook receives (the fields the tests look at).
type hookEvent struct {
	Action, Proto, Stream, Remote, ID string
	Duration                          *float64
	raw                               string
}

// hookServer is an on_publish/on_play/on_done webhook on 127.0.0.1 that
// refuses streams whose name starts with "deny" and records every call.
func hookServer(t *testing.T, block chan struct{}) (url string, events chan hookEvent) {
	events = make(chan hookEvent, 64)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		var ev hookEvent
		if err := json.NewDecoder(teeReader{r, &b}).Decode(&ev); err != nil {
			t.Errorf("hook body: %v", err)
		}
		ev.raw = b.String()
		events <- ev
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}
		if strings.HasPrefix(ev.Stream, "deny") {
			http.Error(w, "no", http.StatusForbidden)
		}
	}))
	t.Cleanup(hs.Close)
	return hs.URL, events
}

type teeReader struct {
	r *http.Request
	b *strings.Builder
}

func (t teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Body.Read(p)
	t.b.Write(p[:n])
	return n, err
}

func nextEvent(ctx context.Context, t *testing.T, events chan hookEvent, what string) hookEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-ctx.Done():
		t.Fatalf("%s: no hook call", what)
		return hookEvent{}
	}
}

func refusedWith(t *testing.T, s *whip.Session, err error, code, what string) {
	t.Helper()
	var he *whip.HTTPError
	if err == nil {
		s.Close(context.Background())
	}
	if !errors.As(err, &he) || he.Status != http.StatusForbidden || he.Code != code {
		t.Fatalf("%s: %v, want 403 %s", what, err, code)
	}
}

// TestAccessHooks: a refusing on_publish stops an RTMP publish (ffmpeg
// exits) and a WHIP publish (403), a refusing on_play a WHEP viewer and
// an RTMP reader (ffprobe fails); an
// allowed RTMP publish, WHIP publish and WHEP viewer each fire on_done
// exactly once, with the id on_publish/on_play had, and no hook ever sees
// the token.
func TestAccessHooks(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	hook, events := hookServer(t, nil)
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.Hooks = config.Hooks{OnPublish: hook + "/publish", OnPlay: hook + "/play", OnDone: hook + "/done", Timeout: config.Duration(5 * time.Second)}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	base := fmt.Sprintf("rtmp://%s/live/", srv.RTMPAddr())

	studio(ctx, t, base+"deny-me?token=not-for-hooks").refused(ctx, t, "RTMP publish refused by on_publish")
	ev := nextEvent(ctx, t, events, "on_publish")
	if ev.Action != "publish" || ev.Proto != "rtmp" || ev.Stream != "deny-me" || ev.Remote != "127.0.0.1" || !strings.HasPrefix(ev.ID, "rtmp-") {
		t.Errorf("on_publish event %+v", ev)
	}
	api, _ := client.LoopbackAPI()
	pub, err := whip.Publish(ctx, srv.URL()+"/whip/deny-me", whip.Options{API: api}, vp8(t))
	refusedWith(t, pub, err, "hook_refused", "WHIP publish refused by on_publish")
	if ev := nextEvent(ctx, t, events, "on_publish (WHIP)"); ev.Action != "publish" || ev.Proto != "whip" || ev.Remote != "127.0.0.1" {
		t.Errorf("WHIP on_publish event %+v", ev)
	}
	view, err := whip.Play(ctx, srv.URL()+"/whep/deny-you", whip.Options{API: api})
	refusedWith(t, view, err, "hook_refused", "WHEP play refused by on_play")
	if ev := nextEvent(ctx, t, events, "on_play"); ev.Action != "play" || ev.Proto != "whep" || ev.Stream != "deny-you" {
		t.Errorf("on_play event %+v", ev)
	}

	if _, err := rtmptest.Probe(ctx, base+"deny-you"); err == nil {
		t.Error("RTMP read refused by on_play: ffprobe succeeded")
	}
	if ev := nextEvent(ctx, t, events, "on_play (RTMP)"); ev.Action != "play" || ev.Proto != "rtmp" || ev.Stream != "deny-you" {
		t.Errorf("RTMP on_play event %+v", ev)
	}

	// Allowed sessions: on_done once each, after they end.
	ff := studio(ctx, t, base+"s?token=not-for-hooks")
	if n := waitRoom(ctx, t, srv, "s").WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks", n)
	}
	rtmpPub := nextEvent(ctx, t, events, "on_publish (allowed)")
	viewer, err := whip.Play(ctx, srv.URL()+"/whep/s", whip.Options{API: api})
	if err != nil {
		t.Fatal(err)
	}
	play := nextEvent(ctx, t, events, "on_play (allowed)")
	viewer.Close(ctx)
	if d := nextEvent(ctx, t, events, "on_done (viewer)"); d.Action != "play_done" || d.ID != play.ID || d.Proto != "whep" || play.Action != "play" {
		t.Errorf("viewer on_done %+v for on_play %+v", d, play)
	}
	wpub, err := whip.Publish(ctx, srv.URL()+"/whip/w", whip.Options{API: api}, vp8(t))
	if err != nil {
		t.Fatal(err)
	}
	whipPub := nextEvent(ctx, t, events, "on_publish (allowed WHIP)")
	ff.kill()
	wpub.Close(ctx)
	done := map[string]hookEvent{}
	for range 2 {
		ev := nextEvent(ctx, t, events, "on_done")
		if ev.Action != "publish_done" || ev.Duration == nil {
			t.Errorf("on_done event %+v", ev)
		}
		done[ev.ID] = ev
	}
	if d, ok := done[rtmpPub.ID]; !ok || d.Proto != "rtmp" || d.Stream != "s" {
		t.Errorf("RTMP on_done %+v for on_publish %+v", d, rtmpPub)
	}
	if d, ok := done[whipPub.ID]; !ok || d.Proto != "whip" || d.Stream != "w" {
		t.Errorf("WHIP on_done %+v for on_publish %+v", d, whipPub)
	}
	// Closing the server sends whatever on_done is still queued: nothing
	// more may come.
	srv.Close()
	close(events)
	for ev := range events {
		t.Errorf("extra hook call %+v", ev)
	}
	for _, ev := range []hookEvent{rtmpPub, whipPub, done[rtmpPub.ID]} {
		if strings.Contains(ev.raw, "not-for-hooks") || strings.Contains(ev.raw, "token") {
			t.Errorf("a hook saw the token: %s", ev.raw)
		}
	}
}

// TestAccessHookTimeout: an on_publish hook that does not answer within
// the timeout refuses (403 hook_refused) instead of hanging the client.
func TestAccessHookTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	hook, events := hookServer(t, block)
	srv := startServer(t, func(c *config.Config) {
		c.Hooks = config.Hooks{OnPublish: hook, Timeout: config.Duration(200 * time.Millisecond)}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	api, _ := client.LoopbackAPI()
	pub, err := whip.Publish(ctx, srv.URL()+"/whip/slow", whip.Options{API: api}, vp8(t))
	refusedWith(t, pub, err, "hook_refused", "WHIP publish with a silent hook")
	nextEvent(ctx, t, events, "on_publish")
}

// TestAccessCIDR: --publish-allow without the client's address refuses
// RTMP (ffmpeg exits) and WHIP (403 address_denied); a stream_access
// read_deny refuses WHEP viewers of that stream.
func TestAccessCIDR(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.PublishAllow = []string{"10.0.0.0/8"}
		c.StreamAccess = map[string]config.StreamAccess{
			"open-*": {PublishAllow: []string{"127.0.0.0/8"}, ReadDeny: []string{"127.0.0.1"}},
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := fmt.Sprintf("rtmp://%s/live/", srv.RTMPAddr())
	studio(ctx, t, base+"s").refused(ctx, t, "RTMP publish from outside --publish-allow")
	if _, ok := srv.SFU().LookupRoom(sfu.Streams, "s"); ok {
		t.Fatal("a refused publisher went live")
	}
	api, _ := client.LoopbackAPI()
	pub, err := whip.Publish(ctx, srv.URL()+"/whip/s", whip.Options{API: api}, vp8(t))
	refusedWith(t, pub, err, "address_denied", "WHIP publish from outside --publish-allow")

	// The stream's own allow list admits loopback; its read_deny refuses.
	studio(ctx, t, base+"open-1")
	if n := waitRoom(ctx, t, srv, "open-1").WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks", n)
	}
	view, err := whip.Play(ctx, srv.URL()+"/whep/open-1", whip.Options{API: api})
	refusedWith(t, view, err, "address_denied", "WHEP play in read_deny")
}

// TestAccessOrder: the token is checked before the address lists, and the
// lists before the hook: a publish without a token gets 401, one with a
// token from outside --publish-allow 403 address_denied, and the hook is
// never asked about either.
func TestAccessOrder(t *testing.T) {
	hook, events := hookServer(t, nil)
	srv := startServer(t, func(c *config.Config) {
		c.AuthSecret = testSecret
		c.PublishAllow = []string{"10.0.0.0/8"}
		c.Hooks = config.Hooks{OnPublish: hook, Timeout: config.Duration(5 * time.Second)}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	api, _ := client.LoopbackAPI()
	pub, err := whip.Publish(ctx, srv.URL()+"/whip/s", whip.Options{API: api}, vp8(t))
	if got := status(t, pub, err); got != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", got)
	}
	pub, err = whip.Publish(ctx, srv.URL()+"/whip/s", whip.Options{API: api, Token: mintToken(t, "s", auth.Grants{Publish: true})}, vp8(t))
	refusedWith(t, pub, err, "address_denied", "a token from outside --publish-allow")
	if len(events) != 0 {
		t.Errorf("the hook was asked about a refused publish: %+v", <-events)
	}
}
