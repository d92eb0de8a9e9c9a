package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
)

func noEnv(string) string { return "" }

func TestBadFlagsExitTwoWithoutPanic(t *testing.T) {
	for _, args := range [][]string{
		{"--room-capacity", "-1"},
		{"--http", "nowhere"},
		{"--bogus"},
		{"serve", "--config", "/does/not/exist.yaml"},
		{"frobnicate"},
		{"token", "--room", "r"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, noEnv, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if strings.Contains(errb.String(), "goroutine ") || errb.Len() == 0 {
			t.Errorf("%v: stderr %q", args, errb.String())
		}
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, noEnv, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, opt := range []string{"-http", "-turn", "-public-ip", "-turn-secret", "-turn-allow-peers", "-room-capacity", "-auth-secret", "-tls-cert", "-tls-key", "-tls-self-signed", "-config"} {
		if !strings.Contains(errb.String(), "  "+opt) {
			t.Errorf("--help lacks %s", opt)
		}
	}
}

func TestTokenCommand(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"token", "--auth-secret", "s", "--room", "team-*", "--identity", "ann", "--ttl", "1h", "--grants", "publish,admin"}, noEnv, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	c, err := auth.Verify([]byte("s"), strings.TrimSpace(out.String()), time.Now())
	if err != nil || c.Identity != "ann" || !c.AllowsRoom("team-x") || !c.Grants.Admin || c.Grants.Subscribe {
		t.Fatalf("token: %v %+v", err, c)
	}
}
