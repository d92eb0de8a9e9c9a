package signaling_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley/parley/internal/bench/signaling"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
)

// A small bounded run proves the tool measures what it says.
func TestRunSmall(t *testing.T) {
	cfg := config.Default()
	cfg.HTTP, cfg.TURN, cfg.MediaUDP, cfg.Ops = "127.0.0.1:0", "off", "off", "127.0.0.1:0"
	cfg.RTMP = "off"
	cfg.RTSP, cfg.SRT = "off", "off"
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	res, err := signaling.Run(context.Background(), signaling.Options{URL: srv.URL(), OpsURL: srv.OpsURL(), Clients: 20, RoomSize: 5,
		Interval: 100 * time.Millisecond, Duration: time.Second, Settle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 20 || res.Relayed < 100 || res.Lost != 0 || res.RelayP99ms <= 0 || res.JoinP50ms <= 0 {
		t.Fatalf("result: %+v", res)
	}
}
