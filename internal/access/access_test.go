package access

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/ingest"
)

func mustList(t *testing.T, items ...string) List {
	t.Helper()
	l, err := ParseList(items)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestParseList(t *testing.T) {
	l := mustList(t, " 10.0.0.0/8", "", "192.0.2.7", "2001:db8::/32", "10.1.2.3/16")
	for a, want := range map[string]bool{"10.9.9.9": true, "192.0.2.7": true, "192.0.2.8": false,
		"2001:db8::1": true, "::ffff:10.0.0.1": true, "11.0.0.1": false, "10.1.200.1": true} {
		if got := l.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Contains(%s) = %v", a, got)
		}
	}
	if l.Contains(netip.Addr{}) {
		t.Error("the zero address is in a list")
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "::ffff:10.0.0.0/104", "fe80::1%eth0", "1.2.3.4/"} {
		if _, err := ParseList([]string{bad}); err == nil {
			t.Errorf("ParseList(%q) accepted", bad)
		}
	}
}

func TestAllows(t *testing.T) {
	l := Lists{
		PublishAllow: mustList(t, "10.0.0.0/8"),
		Streams: map[string]StreamLists{
			"cam-*":     {PublishAllow: mustList(t, "192.168.0.0/16"), ReadDeny: mustList(t, "203.0.113.0/24")},
			"cam-lobby": {PublishDeny: mustList(t, "10.0.0.5")},
			"secret":    {ReadAllow: mustList(t, "10.0.0.0/8"), ReadDeny: mustList(t, "10.6.6.6")},
		},
	}
	cases := []struct {
		stream  string
		publish bool
		remote  string
		ok      bool
	}{
		{"show", true, "10.1.1.1", true},            // global allow
		{"show", true, "8.8.8.8", false},            // not in --publish-allow
		{"show", false, "8.8.8.8", true},            // reading is open
		{"cam-1", true, "192.168.1.2", true},        // the stream's allow replaces the global one
		{"cam-1", true, "10.1.1.1", false},          // ... entirely
		{"cam-1", false, "203.0.113.9", false},      // read_deny
		{"cam-lobby", true, "10.0.0.5", false},      // exact name beats the pattern; deny wins
		{"cam-lobby", true, "10.0.0.6", true},       // exact entry has no allow: the global one applies
		{"secret", false, "10.6.6.6", false},        // deny wins over allow
		{"secret", false, "10.6.6.7", true},         //
		{"secret", false, "::ffff:10.6.6.6", false}, // mapped addresses are unmapped
		{"secret", false, "172.16.0.1", false},      // not in read_allow
		{"secret", true, "10.0.0.1", true},          // publish falls to the global list
	}
	for _, c := range cases {
		ok, why := l.Allows(c.stream, c.publish, netip.MustParseAddr(c.remote))
		if ok != c.ok {
			t.Errorf("Allows(%s, publish=%v, %s) = %v (%s), want %v", c.stream, c.publish, c.remote, ok, why, c.ok)
		}
		if !ok && why == "" {
			t.Errorf("refusal of %s without a reason", c.stream)
		}
	}
}

// hook is a test webhook recording its events.
type hook struct {
	srv    *httptest.Server
	events chan Event
	status atomic.Int32
	block  chan struct{} // when set, the hook waits on it (or the request's end)
	bodies chan string
}

func newHook(t *testing.T) *hook {
	h := &hook{events: make(chan Event, 16), bodies: make(chan string, 16)}
	h.status.Store(http.StatusOK)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev Event
		if err := json.Unmarshal(b, &ev); err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("hook got %s %q: %v", r.Method, b, err)
		}
		h.bodies <- string(b)
		h.events <- ev
		if h.block != nil {
			select {
			case <-h.block:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(int(h.status.Load()))
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-h.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no hook call")
		return Event{}
	}
}

func newChecker(t *testing.T, cfg Config) *Checker {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var req = ingest.Request{Action: ingest.Publish, Proto: "rtmp", Stream: "show", Token: "SECRET-TOKEN", Remote: netip.MustParseAddr("127.0.0.1"), ID: "rtmp-1"}

func TestHooks(t *testing.T) {
	h := newHook(t)
	c := newChecker(t, Config{OnPublish: h.srv.URL + "/pub", OnPlay: h.srv.URL + "/play", OnDone: h.srv.URL + "/done"})
	end, err := c.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	ev := h.next(t)
	if ev.Action != "publish" || ev.Proto != "rtmp" || ev.Stream != "show" || ev.Remote != "127.0.0.1" || ev.ID != "rtmp-1" || ev.Duration != nil {
		t.Errorf("on_publish event %+v", ev)
	}
	if _, err := time.Parse(time.RFC3339, ev.Time); err != nil {
		t.Errorf("time %q: %v", ev.Time, err)
	}
	end()
	end() // a second call does nothing
	ev = h.next(t)
	if ev.Action != "publish_done" || ev.ID != "rtmp-1" || ev.Duration == nil || *ev.Duration < 0 {
		t.Errorf("on_done event %+v", ev)
	}
	for range 2 {
		if b := <-h.bodies; strings.Contains(b, "SECRET-TOKEN") {
			t.Errorf("a hook got the token: %s", b)
		}
	}

	// A refusing on_play: no session, so no on_done.
	h.status.Store(http.StatusForbidden)
	r := req
	r.Action, r.ID = ingest.Read, "whep-2"
	_, err = c.Check(context.Background(), r)
	var d *httperr.Denied
	if !errors.As(err, &d) || d.Code != CodeHookRefused || !strings.Contains(d.Message, "on_play") {
		t.Fatalf("refused play: %v", err)
	}
	if ev := h.next(t); ev.Action != "play" {
		t.Errorf("on_play event %+v", ev)
	}
	c.Close()
	if st := c.Stats(); st.HookRefused != 1 || st.DoneSent != 1 || st.DoneDropped != 0 {
		t.Errorf("stats %+v", st)
	}
	select {
	case ev := <-h.events:
		t.Errorf("unexpected hook call %+v", ev)
	default:
	}
}

func TestHookTimeoutRefuses(t *testing.T) {
	h := newHook(t)
	h.block = make(chan struct{})
	defer close(h.block)
	c := newChecker(t, Config{OnPublish: h.srv.URL, HookTimeout: 50 * time.Millisecond})
	_, err := c.Check(context.Background(), req)
	var d *httperr.Denied
	if !errors.As(err, &d) || d.Code != CodeHookRefused {
		t.Fatalf("a hook that never answers: %v", err)
	}
}

func TestHookUnreachableAndRedirectRefuse(t *testing.T) {
	redir := httptest.NewServer(http.RedirectHandler("http://127.0.0.1:1/", http.StatusFound))
	defer redir.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	for _, u := range []string{redir.URL, deadURL} {
		c := newChecker(t, Config{OnPublish: u})
		if _, err := c.Check(context.Background(), req); err == nil {
			t.Errorf("hook %s allowed", u)
		}
	}
}

func TestCIDRBeforeHook(t *testing.T) {
	h := newHook(t)
	c := newChecker(t, Config{Lists: Lists{PublishAllow: mustList(t, "10.0.0.0/8")}, OnPublish: h.srv.URL})
	_, err := c.Check(context.Background(), req)
	var d *httperr.Denied
	if !errors.As(err, &d) || d.Code != CodeAddressDenied || !strings.Contains(d.Message, "--publish-allow") {
		t.Fatalf("refusal %v", err)
	}
	select {
	case ev := <-h.events:
		t.Errorf("the hook was called for a refused address: %+v", ev)
	default:
	}
	// The server's own pulls have no address and are not judged by lists.
	pull := req
	pull.Proto, pull.Remote = "pull", netip.Addr{}
	if _, err := c.Check(context.Background(), pull); err != nil {
		t.Errorf("pull: %v", err)
	}
	h.next(t)
}

func TestDoneQueueBounded(t *testing.T) {
	h := newHook(t)
	h.block = make(chan struct{})
	c := newChecker(t, Config{OnDone: h.srv.URL, DoneQueue: 1, DoneWorkers: 1})
	var ends []func()
	for range 4 {
		end, err := c.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, end)
	}
	ends[0]()
	h.next(t) // the worker is busy with the first
	ends[1]() // queued
	ends[2]() // dropped
	ends[3]() // dropped
	if st := c.Stats(); st.DoneDropped != 2 {
		t.Errorf("dropped %d, want 2", st.DoneDropped)
	}
	close(h.block)
	h.next(t)
	c.Close()
	if st := c.Stats(); st.DoneSent != 2 {
		t.Errorf("sent %d, want 2", st.DoneSent)
	}
}

func TestNewRefusesBadHookURL(t *testing.T) {
	for _, u := range []string{"ftp://x/", "/relative", "http://", "localhost:8080"} {
		if _, err := New(Config{OnDone: u}); err == nil {
			t.Errorf("hook %q accepted", u)
		}
	}
}

func FuzzParseList(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32,::1", "::ffff:1.2.3.4/128", " , 1.2.3.4/0", "fe80::1%eth0"} {
		f.Add(s, "1.2.3.4")
	}
	f.Fuzz(func(t *testing.T, list, addr string) {
		l, err := ParseList(strings.Split(list, ","))
		if err != nil {
			return
		}
		// Every parsed range is canonical and round-trips.
		for _, p := range l {
			q, err := netip.ParsePrefix(p.String())
			if err != nil || q != p || p.Masked() != p {
				t.Fatalf("%v does not round-trip: %v %v", p, q, err)
			}
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		lists := Lists{PublishAllow: l, Streams: map[string]StreamLists{"*": {ReadDeny: l}}}
		in := l.Contains(a)
		if ok, _ := lists.Allows("x", true, a); ok != (in || len(l) == 0) {
			t.Fatalf("publish allow %v for %v in %v", ok, a, l)
		}
		if ok, _ := lists.Allows("x", false, a); ok == in {
			t.Fatalf("read deny %v for %v in %v", ok, a, l)
		}
	})
}

// TestRecordDone: a finished recording is POSTed to on_record_done with
// its path, duration and size; without the hook nothing is sent.
func TestRecordDone(t *testing.T) {
	h := newHook(t)
	c := newChecker(t, Config{OnRecordDone: h.srv.URL})
	c.RecordDone(Recording{Stream: "show", Path: "/rec/show/show-2026.mp4", Duration: 1500 * time.Millisecond, Size: 4096})
	ev := h.next(t)
	if ev.Action != "record_done" || ev.Stream != "show" || ev.Path != "/rec/show/show-2026.mp4" || ev.Duration == nil || *ev.Duration != 1.5 ||
		ev.Size == nil || *ev.Size != 4096 || ev.Time == "" {
		t.Errorf("event %+v", ev)
	}
	if end, err := c.Check(context.Background(), req); err != nil {
		t.Fatal(err)
	} else {
		end() // on_done is off: nothing goes to the record hook
	}
	off := newChecker(t, Config{})
	off.RecordDone(Recording{Stream: "x"})
	c.Close()
	if st := c.Stats(); st.DoneSent != 1 || st.DoneDropped != 0 {
		t.Errorf("stats %+v", st)
	}
}
