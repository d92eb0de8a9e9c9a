package config

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
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
		{"--rtmp", "1935"},            // no host:port
		{"--turn-tls", "5349"},        // no host:port
		{"--rtsp-udp", "8000"},        // no host:port
		{"--rtsp-udp", ":8001"},       // the RTP port is even
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
	for _, ok := range []string{":1935", "127.0.0.1:0", "off"} {
		if c, err := Load([]string{"--rtmp", ok}, noEnv, io.Discard); err != nil || c.RTMP != ok {
			t.Errorf("--rtmp %s: %v", ok, err)
		}
	}
	for _, ok := range []string{":8000", "127.0.0.1:0", "off", ""} {
		if c, err := Load([]string{"--rtsp-udp", ok}, noEnv, io.Discard); err != nil || c.RTSPUDP != ok {
			t.Errorf("--rtsp-udp %s: %v", ok, err)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte("room_capacty: 3\n"), 0o600)
	if _, err := Load([]string{"--config", file}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "room_capacty") {
		t.Errorf("typo in file: %v", err)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodSecret = "config-test-secret-0123456789abc" // 32 bytes

func TestRow12UnsafeSecretsRefused(t *testing.T) {
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "secret", goodSecret+"\n \n")
	shortFile := writeFile(t, dir, "short", "s3cret\n")
	emptyFile := writeFile(t, dir, "empty", " \n")
	keyFile := writeFile(t, dir, "key.pub", "-----BEGIN PUBLIC KEY-----\n")
	missing := filepath.Join(dir, "missing")
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	refused := []struct {
		args []string
		env  func(string) string
		want string // in the error
	}{
		{[]string{"--auth-secret", "a"}, noEnv, "parley token secret"},
		{[]string{"--auth-secret", goodSecret[:31]}, noEnv, "openssl rand -base64 32"},
		{nil, env("PARLEY_AUTH_SECRET", "short"), "auth-secret"},
		{[]string{"--auth-secret-file", shortFile}, noEnv, shortFile},
		{[]string{"--auth-secret-file", emptyFile}, noEnv, "empty"},
		{[]string{"--auth-secret-file", missing}, noEnv, "missing"},
		{[]string{"--auth-secret", goodSecret, "--auth-secret-file", secretFile}, noEnv, "exclude each other"},
		{[]string{"--auth-secret-file", secretFile}, env("PARLEY_AUTH_SECRET", goodSecret), "exclude each other"},
		{[]string{"--turn-secret", "t", "--turn-secret-file", secretFile}, noEnv, "exclude each other"},
		{[]string{"--turn-secret-file", emptyFile}, noEnv, "empty"},
		{[]string{"--turn-secret", "north"}, noEnv, "turn-secret: a secret of 5 bytes"},
		{[]string{"--turn-urls", "turn:turn.example.com:3478"}, noEnv, "never authenticate"},
		{[]string{"--auth-public-key", missing}, noEnv, "auth-public-key"},
		{[]string{"--auth-jwks", emptyFile}, noEnv, "auth-jwks"},
		{[]string{"--rate-limit", "NaN"}, noEnv, "rate-limit"},
	}
	for _, c := range refused {
		_, err := Load(c.args, c.env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error with %q", c.args, err, c.want)
		}
	}
	accepted := []struct {
		args  []string
		env   func(string) string
		check func(Config) bool
	}{
		{[]string{"--auth-secret", goodSecret}, noEnv, func(c Config) bool { return c.AuthSecret == goodSecret }},
		{nil, env("PARLEY_AUTH_SECRET", goodSecret), func(c Config) bool { return c.AuthSecret == goodSecret }},
		{[]string{"--auth-secret-file", secretFile}, noEnv, func(c Config) bool { return c.AuthSecret == goodSecret }},
		{nil, env("PARLEY_AUTH_SECRET_FILE", secretFile), func(c Config) bool { return c.AuthSecret == goodSecret }},
		{[]string{"--turn-secret-file", secretFile, "--turn-urls", "turn:t.example:3478"}, noEnv, func(c Config) bool { return c.TURNSecret == goodSecret }},
		{[]string{"--turn-secret", goodSecret, "--turn-urls", "turn:t.example:3478"}, noEnv, func(c Config) bool { return c.TURNSecret == goodSecret }},
		{[]string{"--auth-public-key", keyFile, "--auth-jwks", keyFile}, noEnv, func(c Config) bool { return c.AuthPublicKey == keyFile && c.AuthSecret == "" }},
	}
	for _, c := range accepted {
		cfg, err := Load(c.args, c.env, io.Discard)
		if err != nil || !c.check(cfg) {
			t.Errorf("%v: %v", c.args, err)
		}
	}
	// A file named in a Config that did not come through Load is not
	// silently ignored.
	cfg := Default()
	cfg.AuthSecretFile = secretFile
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "not been read") {
		t.Errorf("unread secret file: %v", err)
	}
}

// memFiles serves Load's reads from memory.
func memFiles(files map[string][]byte) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
	}
}

// FuzzLoad feeds YAML (and a secret file's contents) through Load: it must
// never panic, and a configuration it accepts passes Validate and is safe:
// no short auth secret, no TURN URLs without the secret they need, secrets
// from files trimmed as documented.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("room_capacity: 3\nrooms:\n  big: {capacity: 50, mode: sfu}\nping_interval: 2s\n"), []byte(goodSecret+"\n"))
	f.Add([]byte("auth_secret_file: secret\n"), []byte("short\n"))
	f.Add([]byte("auth_secret_file: secret\nauth_secret: x\n"), []byte(goodSecret))
	f.Add([]byte("turn_urls: [turn:t.example]\nturn_secret_file: secret\n"), []byte(goodSecret))
	f.Add([]byte("auth_public_key: secret\nauth_jwks: nope\n"), []byte(""))
	f.Add([]byte("rate_limit: .nan\nmax_message: 99999999999\n"), []byte{})
	f.Add([]byte("rooms: {\"a*\": {capacity: -1}}\nturn_ttl: -5s\n"), []byte{})
	f.Add([]byte("[1, 2]"), []byte{})
	f.Fuzz(func(t *testing.T, yaml, secret []byte) {
		read := memFiles(map[string][]byte{"config.yaml": yaml, "secret": secret})
		cfg, err := load([]string{"--config", "config.yaml"}, noEnv, io.Discard, read)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted, yet Validate says: %v", err)
		}
		if n := len(cfg.AuthSecret); n > 0 && n < 32 {
			t.Fatalf("%d-byte auth secret accepted", n)
		}
		if len(cfg.TURNExternal) > 0 && cfg.TURNSecret == "" {
			t.Fatal("turn-urls accepted without a TURN secret")
		}
		trimmed := strings.TrimRightFunc(string(secret), unicode.IsSpace)
		if (cfg.AuthSecretFile == "secret" && cfg.AuthSecret != trimmed) || (cfg.TURNSecretFile == "secret" && cfg.TURNSecret != trimmed) {
			t.Fatalf("secret file read as %q / %q, want %q", cfg.AuthSecret, cfg.TURNSecret, trimmed)
		}
		if !(cfg.RateLimit > 0) || math.IsInf(cfg.RateLimit, 0) {
			t.Fatalf("rate-limit %v accepted", cfg.RateLimit)
		}
	})
}

func TestAccessOptions(t *testing.T) {
	yml := `
publish_allow: [10.0.0.0/8]
stream_access:
  cam-*: {publish_allow: [192.168.0.0/16], read_deny: [203.0.113.7]}
hooks: {on_publish: "http://127.0.0.1:9/pub", timeout: 2s}
`
	read := memFiles(map[string][]byte{"c.yaml": []byte(yml)})
	cfg, err := load([]string{"--config", "c.yaml", "--read-allow", "10.0.0.0/8, ::1", "--on-done", "https://hooks.example/done"}, noEnv, io.Discard, read)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StreamAccess["cam-*"].ReadDeny[0] != "203.0.113.7" || len(cfg.ReadAllow) != 2 || cfg.Hooks.Timeout.D() != 2*time.Second ||
		cfg.Hooks.OnPublish == "" || cfg.Hooks.OnDone != "https://hooks.example/done" {
		t.Errorf("access options %+v %+v", cfg.StreamAccess, cfg.Hooks)
	}
	for _, args := range [][]string{
		{"--publish-allow", "10.0.0.0/33"},
		{"--read-allow", "example.com"},
		{"--on-play", "ftp://x/"},
		{"--on-publish", "localhost:8080/hook"},
		{"--hook-timeout", "0s"},
	} {
		if _, err := load(args, noEnv, io.Discard, read); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	bad := memFiles(map[string][]byte{"c.yaml": []byte("stream_access: {\"bad/name\": {publish_deny: [1.2.3.4]}, ok: {read_allow: [nope]}}\n")})
	_, err = load([]string{"--config", "c.yaml"}, noEnv, io.Discard, bad)
	if err == nil || !strings.Contains(err.Error(), "bad/name") || !strings.Contains(err.Error(), "stream_access.ok.read_allow") {
		t.Errorf("bad stream_access: %v", err)
	}
}

func TestTURNTLS(t *testing.T) {
	if c := Default(); c.TURNTLS != ":5349" {
		t.Fatalf("default turn-tls %q", c.TURNTLS)
	}
	for _, v := range []string{"off", "127.0.0.1:443"} {
		c, err := Load([]string{"--turn-tls", v}, noEnv, io.Discard)
		if err != nil || c.TURNTLS != v {
			t.Fatalf("--turn-tls %s: %q, %v", v, c.TURNTLS, err)
		}
	}
}
