package meeting

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Six members who all publish while being offered each other's tracks
// (five showed a negotiation bug that three did not).
func TestSixPersonMeeting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and six pion participants")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := Run(ctx, Options{Participants: 6, VideoBitrate: 150_000, Warmup: 500 * time.Millisecond, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Every member receives the other five's audio and video.
	if res.Expected != 60 || res.Subscriptions != 60 || res.Silent != 0 {
		t.Fatalf("subscriptions: %+v", res)
	}
	if res.Sent == 0 || res.Received == 0 || res.LatencyP50 <= 0 || res.ServerRSSMB <= 0 {
		t.Fatalf("missing figures: %+v", res)
	}
	if !strings.Contains(res.Table(), "cores/subscription") {
		t.Fatal("table")
	}
}

func TestStamp(t *testing.T) {
	p := make([]byte, 40)
	putStamp(p, 7, 1, 123456789)
	if pub, kind, at, ok := readStamp(p); !ok || pub != 7 || kind != 1 || at != 123456789 {
		t.Fatalf("%d %d %d %v", pub, kind, at, ok)
	}
	if _, _, _, ok := readStamp(make([]byte, 40)); ok {
		t.Fatal("unstamped payload read as stamped")
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	if _, err := Run(context.Background(), Options{URL: "http://192.0.2.1:8080"}); err == nil {
		t.Fatal("non-loopback URL accepted")
	}
}

// Participants go round the nodes: i joins the (i mod n)-th.
func TestNodeURL(t *testing.T) {
	o := Options{URL: "a", Nodes: []string{"b", "c"}}
	var got []string
	for i := range 7 {
		got = append(got, o.nodeURL(i))
	}
	if strings.Join(got, "") != "abcabca" {
		t.Fatalf("nodes %v", got)
	}
	if (&Options{URL: "a"}).nodeURL(5) != "a" {
		t.Fatal("one server")
	}
}
