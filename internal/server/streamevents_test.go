package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// eventStatus is the part of a status event the tests read.
type eventStatus struct {
	Live    bool `json:"live"`
	Tracks  int  `json:"tracks"`
	Viewers int  `json:"viewers"`
}

// sseStream is a Go client of /api/streams/<s>/events: its status events
// in order, and done closed when the server ends the answer.
type sseStream struct {
	resp   *http.Response
	events chan eventStatus
	done   chan struct{}
}

func openEvents(t *testing.T, url string) *sseStream {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{resp: resp, events: make(chan eventStatus, 64), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "status":
				var st eventStatus
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &st); err != nil {
					t.Errorf("event data %q: %v", line, err)
				}
				s.events <- st
			case line == "":
				event = ""
			}
		}
	}()
	t.Cleanup(func() { resp.Body.Close(); <-s.done })
	return s
}

// next waits for the next event that satisfies ok, failing on a closed
// stream or after a minute.
func (s *sseStream) next(t *testing.T, what string, ok func(eventStatus) bool) eventStatus {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case st := <-s.events:
			if ok(st) {
				return st
			}
		case <-s.done:
			t.Fatalf("event stream ended waiting for %s", what)
		case <-deadline:
			t.Fatalf("no event: %s", what)
		}
	}
}

// TestStreamEvents: the status events say at once that a stream is not
// live, then that it went live, that a viewer joined and left, and that
// it ended, each as it happens; the server's shutdown ends the answer.
func TestStreamEvents(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ev := openEvents(t, srv.URL()+"/api/streams/ev1/events")
	if st := ev.next(t, "the first event", func(eventStatus) bool { return true }); st.Live || st.Viewers != 0 {
		t.Fatalf("first event before publishing: %+v", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	end := publishVP8(ctx, t, srv.URL()+"/whip/ev1")
	ev.next(t, "live", func(st eventStatus) bool { return st.Live && st.Tracks == 1 })

	api, _ := client.LoopbackAPI()
	v, err := whip.Play(ctx, srv.URL()+"/whep/ev1", whip.Options{API: api, Kinds: []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}})
	if err != nil {
		t.Fatal(err)
	}
	ev.next(t, "a viewer", func(st eventStatus) bool { return st.Viewers == 1 })
	v.Close(ctx)
	ev.next(t, "no viewer", func(st eventStatus) bool { return st.Viewers == 0 })

	end()
	ev.next(t, "ended", func(st eventStatus) bool { return !st.Live })

	srv.Close()
	select {
	case <-ev.done:
	case <-time.After(time.Minute):
		t.Fatal("the event stream outlived the server's shutdown")
	}
}

// TestStreamEventsAccess: the events answer whom the status GET answers
// (a token for the stream, as ?token= since EventSource sends no
// headers), and at most 16 connections per client address.
func TestStreamEventsAccess(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret })
	viewer := mintToken(t, "priv", auth.Grants{Subscribe: true})
	other := mintToken(t, "other", auth.Grants{Subscribe: true})
	base := srv.URL() + "/api/streams/priv/events"
	for _, tc := range []struct {
		name, url string
		want      int
	}{
		{"no token", base, http.StatusUnauthorized},
		{"other stream's token", base + "?token=" + other, http.StatusForbidden},
		{"bad name", srv.URL() + "/api/streams/bad%20name/events?token=" + viewer, http.StatusBadRequest},
	} {
		if code, _, body := do(t, http.MethodGet, tc.url, ""); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	for i := 0; i < 16; i++ {
		ev := openEvents(t, base+"?token="+viewer)
		ev.next(t, "the first event", func(eventStatus) bool { return true })
	}
	if code, h, body := do(t, http.MethodGet, base+"?token="+viewer, ""); code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("17th connection: %d %s, want 429 with Retry-After", code, body)
	}
}
