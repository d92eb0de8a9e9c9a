package soak

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/parley/parley/internal/bench/benchsrv"
)

// TestRun: a short soak against an in-process server — clients and media
// sessions come and go, every join succeeds, and the server is read idle
// (no members, no media sessions) before and after.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a load run")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pprof := ln.Addr().String()
	ln.Close()
	cfg := benchsrv.Config()
	cfg.Pprof = pprof
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := benchsrv.StartConfig(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	res, err := Run(ctx, Options{URL: srv.URL(), OpsURL: srv.OpsURL(), PprofURL: "http://" + pprof,
		Clients: 20, RoomSize: 5, Sessions: 4, MediaRoomSize: 2, Stay: time.Second, Interval: 200 * time.Millisecond,
		Duration: 4 * time.Second, Sample: time.Second, ProfileDir: t.TempDir(), Progress: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.Table())
	if res.JoinErrors != 0 || res.MediaErrors != 0 || res.Joins <= int64(res.Clients) || res.MediaJoins < int64(res.Sessions) || res.Signals == 0 {
		t.Errorf("churn: %+v", res)
	}
	if len(res.During) == 0 || res.Before.Goroutines == 0 || res.After.Members != 0 || res.After.SFU != 0 {
		t.Errorf("readings: before %+v during %+v after %+v", res.Before, res.During, res.After)
	}
}
