package fanout

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and three pion clients")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Run(ctx, Options{Viewers: 2, Warmup: time.Second, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 2 || res.Expected == 0 || res.PublisherPackets == 0 {
		t.Fatalf("result: %+v", res)
	}
	if res.LatencyP50 <= 0 || res.FirstPacketP50 <= 0 || res.ServerRSSMB <= 0 {
		t.Fatalf("missing figures: %+v", res)
	}
	if !strings.Contains(res.Table(), "packet loss") {
		t.Fatal("table")
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	if _, err := Run(context.Background(), Options{URL: "http://192.0.2.1:8080"}); err == nil {
		t.Fatal("non-loopback URL accepted")
	}
	if _, err := StartServer(context.Background(), "0.0.0.0:0", nil, false); err == nil {
		t.Fatal("non-loopback listen address accepted")
	}
}

func TestIVF(t *testing.T) {
	frames, err := readIVF(defaultVideo)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) < 250 {
		t.Fatalf("%d frames", len(frames))
	}
	if _, err := readIVF([]byte("junk")); err == nil {
		t.Fatal("junk accepted")
	}
}
