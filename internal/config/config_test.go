package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestDefaultsAreValid(t *testing.T) {
	c, err := Load(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP != ":8080" || c.TURN != ":3478" || c.RoomCapacity != 16 || c.TURNTTL.D() != 10*time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:0", "off"} {
		if _, err := Load([]string{"--pprof", ok}, noEnv, io.Discard); err != nil {
			t.Errorf("--pprof %s refused: %v", ok, err)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte("room_capacity: 3\nhttp: \":9000\"\nturn_allow_peers: [\"127.0.0.0/8\"]\nrooms:\n  big:\n    capacity: 50\n    mode: sfu\nping_interval: 2s\n"), 0o600)
	env := map[string]string{"PARLEY_HTTP": ":9100"}
	c, err := Load([]string{"--config", file, "--room-capacity=4"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.RoomCapacity != 4 || c.HTTP != ":9100" || c.CapacityOf("big", "sfu") != 50 || c.CapacityOf("x", "p2p") != 4 || c.CapacityOf("x", "sfu") != 50 || c.CapacityOf("chat.show", "p2p") != 1000 ||
		c.ModeOf("big") != "sfu" || c.PingInterval.D() != 2*time.Second || c.TURNAllow[0] != "127.0.0.0/8" {
		t.Fatalf("got %+v", c)
	}
}

func TestBadInputIsReported(t *testing.T) {
	cases := [][]string{
		{"--room-capacity", "0"},
		{"--http", "nope"},
		{"--turn-allow-peers", "10.0.0.0/99"},
		{"--public-ip", "x"},
		{"--ping-interval", "banana"},
		{"--no-such-flag"},
		{"--tls-cert", "a"},
		{"--pprof", ":6060"},          // every interface: the profiler has no auth
		{"--pprof", "192.0.2.1:6060"}, // not loopback
	}
	for _, args := range cases {
		if _, err := Load(args, noEnv, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	for _, ok := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:0", "off"} {
		if _, err := Load([]string{"--pprof", ok}, noEnv, io.Discard); err != nil {
			t.Errorf("--pprof %s refused: %v", ok, err)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte("room_capacty: 3\n"), 0o600)
	if _, err := Load([]string{"--config", file}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "room_capacty") {
		t.Errorf("typo in file: %v", err)
	}
}
