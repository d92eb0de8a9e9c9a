package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrHelp is returned by Load when the user asked for --help.
var ErrHelp = flag.ErrHelp

// Load builds the configuration for `parley serve` from defaults, the YAML
// file named by --config, PARLEY_* environment variables and flags, in
// that order, and validates it. Usage and errors are written to out.
func Load(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	return load(args, getenv, out, readFile)
}

// load is Load reading files with read (tests and fuzzing pass their own).
func load(args []string, getenv func(string) string, out io.Writer, read func(string) ([]byte, error)) (Config, error) {
	cfg := Default()
	fs := FlagSet(&cfg, out)
	var file string
	fs.StringVar(&file, "config", "", "YAML `file` with any of these options (keys use _ for -)")
	if v := getenv("PARLEY_CONFIG"); v != "" {
		file = v
	}
	for i, a := range args { // --config must be read before the flags that override it
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "config" && strings.HasPrefix(a, "-") {
			if hasVal {
				file = val
			} else if i+1 < len(args) {
				file = args[i+1]
			}
		}
	}
	if file != "" {
		b, err := read(file)
		if err != nil {
			return cfg, fmt.Errorf("config file: %w", err)
		}
		if err := decode(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		key := "PARLEY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(key); v != "" && f.Name != "config" {
			if err := f.Value.Set(v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s=%q: %v", key, v, err))
			}
		}
	})
	if envErr != nil {
		return cfg, envErr
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.readSecrets(read); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// decode reads a YAML configuration over cfg; unknown keys are errors (a
// typo must not pass for a setting).
func decode(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// FlagSet registers every option of `parley serve` onto cfg.
func FlagSet(cfg *Config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.HTTP, "http", cfg.HTTP, "HTTP(S) listen `address` for the app, /ws, /api, /whip, /whep, /healthz, /metrics")
	fs.StringVar(&cfg.TURN, "turn", cfg.TURN, "STUN/TURN UDP and TCP listen `address`, or off")
	fs.StringVar(&cfg.TURNTLS, "turn-tls", cfg.TURNTLS, "TURN over TLS listen `address` (turns:, with the HTTPS certificate; off without one), or off")
	fs.StringVar(&cfg.PublicIP, "public-ip", cfg.PublicIP, "`IP` announced in TURN relay addresses and ICE candidates (default: the machine's own)")
	fs.StringVar(&cfg.TURNSecret, "turn-secret", cfg.TURNSecret, "shared `secret` for TURN REST credentials (coturn use-auth-secret); random per start if empty")
	fs.Var((*listValue)(&cfg.TURNAllow), "turn-allow-peers", "`CIDR,...` TURN may relay to although private/loopback (denied by default)")
	fs.IntVar(&cfg.TURNQuota, "turn-quota", cfg.TURNQuota, "TURN allocations per user")
	fs.Var(&cfg.TURNTTL, "turn-ttl", "lifetime of the TURN credentials handed to members")
	fs.Var((*listValue)(&cfg.TURNExternal), "turn-urls", "announce these `URL,...` (e.g. an external coturn with the same --turn-secret, which they require) instead of the embedded server")
	fs.IntVar(&cfg.TURNSockets, "turn-sockets", cfg.TURNSockets, "UDP sockets (SO_REUSEPORT) serving TURN; 0 = one per CPU")
	fs.IntVar(&cfg.TURNBuffer, "turn-buffer", cfg.TURNBuffer, "TURN socket buffer `bytes`; 0 = 4 MiB, -1 = the OS default")
	fs.IntVar(&cfg.RoomCapacity, "room-capacity", cfg.RoomCapacity, "members per peer-to-peer room (per-room or per-pattern overrides in the config file)")
	fs.IntVar(&cfg.SFUCapacity, "sfu-room-capacity", cfg.SFUCapacity, "members per server-routed (group) room")
	fs.IntVar(&cfg.MaxRooms, "max-rooms", cfg.MaxRooms, "rooms open at once")
	fs.Var((*listValue)(&cfg.AllowOrigins), "allow-origins", "`HOST,...` patterns (path.Match; with scheme:// to match scheme too) of other sites whose pages may signal here, for embedding calls")
	fs.StringVar(&cfg.AuthSecret, "auth-secret", cfg.AuthSecret, "HS256 `secret` of 32 bytes or more (parley token secret makes one): when set, joining needs a token (see parley token)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "TLS certificate `file` (PEM) for HTTPS")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "TLS key `file` (PEM) for HTTPS")
	fs.BoolVar(&cfg.TLSSelfSigned, "tls-self-signed", cfg.TLSSelfSigned, "serve HTTPS with a generated self-signed certificate (LAN use: cameras need https)")
	fs.IntVar(&cfg.MaxMessage, "max-message", cfg.MaxMessage, "largest signaling message in `bytes`")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", cfg.RateLimit, "signaling messages per second per connection, sustained")
	fs.IntVar(&cfg.RateBurst, "rate-burst", cfg.RateBurst, "signaling messages allowed in a burst")
	fs.IntVar(&cfg.Outbox, "outbox", cfg.Outbox, "messages queued for a member before it is cut off as too slow")
	fs.Var(&cfg.PingInterval, "ping-interval", "WebSocket keepalive; a silent peer is dropped after two")
	fs.Var(&cfg.PollTimeout, "poll-timeout", "how long GET /api/session/{id}/events waits")
	fs.Var(&cfg.SessionIdle, "session-idle", "HTTP sessions idle longer than this are closed")
	fs.Var(&cfg.ResumeGrace, "resume-grace", "a member whose connection dropped is kept this long for its client to resume it (0: it leaves at once)")
	fs.StringVar(&cfg.MediaUDP, "media-udp", cfg.MediaUDP, "SFU media UDP `address` (one port for all sessions)")
	fs.StringVar(&cfg.MediaTCP, "media-tcp", cfg.MediaTCP, "SFU media ICE-TCP `address`, or off")
	fs.StringVar(&cfg.Pprof, "pprof", cfg.Pprof, "serve Go's profiler (/debug/pprof/) on this loopback `address`; off by default")
	fs.IntVar(&cfg.MaxPublishBitrate, "max-publish-bitrate", cfg.MaxPublishBitrate, "most the SFU asks a publisher to send, all its video (REMB, `bit/s`); 0 = 3000000")
	fs.BoolVar(&cfg.MediaNoBatch, "media-no-batch", cfg.MediaNoBatch, "send each media datagram with its own system call instead of batching (sendmmsg); for comparison")
	fs.StringVar(&cfg.AuthSecretFile, "auth-secret-file", cfg.AuthSecretFile, "read the --auth-secret from this `file` (keeps it out of ps)")
	fs.StringVar(&cfg.AuthPublicKey, "auth-public-key", cfg.AuthPublicKey, "PEM `file` of ES256 or Ed25519 public keys: tokens signed by their private keys are accepted")
	fs.StringVar(&cfg.AuthJWKS, "auth-jwks", cfg.AuthJWKS, "JWKS `file` of public keys tokens may be signed with")
	fs.StringVar(&cfg.TURNSecretFile, "turn-secret-file", cfg.TURNSecretFile, "read the --turn-secret from this `file`")
	fs.Var((*listValue)(&cfg.PublicHost), "public-host", "`HOST,...` names this server is reached at (judges same-origin requests; e.g. parley.example.com)")
	fs.Var((*listValue)(&cfg.TrustedProxies), "trusted-proxies", "`CIDR,...` of reverse proxies whose X-Forwarded-For / Forwarded header names the client")
	fs.StringVar(&cfg.Ops, "ops", cfg.Ops, "operations listen `address` for /metrics, the status page and management APIs, or off")
	fs.StringVar(&cfg.RTMP, "rtmp", cfg.RTMP, "RTMP ingest listen `address` (OBS, ffmpeg: rtmp://host/live/<stream>), or off")
	fs.StringVar(&cfg.RTSP, "rtsp", cfg.RTSP, "RTSP listen `address` (cameras and ffmpeg push rtsp://host:8554/<stream>; VLC reads it), or off")
	fs.StringVar(&cfg.RTSPUDP, "rtsp-udp", cfg.RTSPUDP, "RTSP's RTP UDP `address` (even port; RTCP takes the next): empty for port 8000 on the --rtsp host, or off for interleaved TCP only")
	fs.StringVar(&cfg.SRT, "srt", cfg.SRT, "SRT listen UDP `address` (srt://host:8890?streamid=publish:<stream>, or read:<stream>), or off")
	fs.IntVar(&cfg.StreamConnsPerIP, "stream-conns-per-ip", cfg.StreamConnsPerIP, "RTMP, RTSP and SRT connections per client address (each listener)")
	fs.IntVar(&cfg.StreamMaxConns, "stream-max-conns", cfg.StreamMaxConns, "RTMP, RTSP and SRT connections in all (each listener)")
	fs.IntVar(&cfg.MaxCameras, "max-cameras", cfg.MaxCameras, "IP camera streams pulled at once (the configuration file's and the API's together)")
	fs.IntVar(&cfg.MaxWebRTCViewers, "max-webrtc-viewers", cfg.MaxWebRTCViewers, "WebRTC (WHEP, watch page) viewers per stream, 0 = unlimited; past it WHEP answers 503 and the watch page plays HLS (per stream: max_webrtc_viewers in streams:)")
	fs.Var((*listValue)(&cfg.PublishAllow), "publish-allow", "`CIDR,...` that may publish streams (RTMP, RTSP, SRT, WHIP, browsers); empty: any address (per-stream lists: stream_access in the config file)")
	fs.Var((*listValue)(&cfg.ReadAllow), "read-allow", "`CIDR,...` that may read streams (WHEP, /w/, RTSP, SRT, RTMP); empty: any address")
	fs.StringVar(&cfg.Hooks.OnPublish, "on-publish", cfg.Hooks.OnPublish, "`URL` POSTed a JSON event before each publish; a non-2xx answer refuses it")
	fs.StringVar(&cfg.Hooks.OnPlay, "on-play", cfg.Hooks.OnPlay, "`URL` POSTed a JSON event before each play (read); a non-2xx answer refuses it")
	fs.StringVar(&cfg.Hooks.OnDone, "on-done", cfg.Hooks.OnDone, "`URL` POSTed a JSON event when a publish or play session ends")
	fs.Var(&cfg.Hooks.Timeout, "hook-timeout", "time a hook may take to answer; on_publish/on_play past it refuse")
	fs.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "signaling connections at once (WebSocket and HTTP)")
	fs.IntVar(&cfg.ConnsPerIP, "conns-per-ip", cfg.ConnsPerIP, "signaling connections per client address")
	fs.IntVar(&cfg.RoomsPerIP, "rooms-per-ip", cfg.RoomsPerIP, "rooms one client address may create per minute")
	fs.Var(&cfg.JoinTimeout, "join-timeout", "a signaling connection that has not joined a room by then is closed")
	fs.IntVar(&cfg.OutboxBytes, "outbox-bytes", cfg.OutboxBytes, "`bytes` queued for a member before it is cut off as too slow")
	fs.IntVar(&cfg.ByteRate, "byte-rate", cfg.ByteRate, "signaling `bytes` per second per connection, sustained")
	fs.IntVar(&cfg.ByteBurst, "byte-burst", cfg.ByteBurst, "signaling `bytes` allowed in a burst (at least max-message)")
	fs.Var(&cfg.BodyTimeout, "body-timeout", "time allowed to read an HTTP request body")
	fs.IntVar(&cfg.PendingPerIP, "pending-per-ip", cfg.PendingPerIP, "WHIP/WHEP sessions per client address that have not connected yet")
	fs.Var(&cfg.ICETimeout, "ice-timeout", "a WHIP/WHEP session that has not connected by then is dropped")
	fs.Var(&cfg.ReattachGrace, "reattach-grace", "how long WHEP and browser viewers wait, session kept, for a stream's publisher to come back (OBS reconnecting, a camera rebooting)")
	fs.IntVar(&cfg.TURNPerIP, "turn-per-ip", cfg.TURNPerIP, "TURN allocations per client address, across usernames")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "`directory` for state written at run time (camera streams added through the management API); created when first written")
	// Recording (internal/record).
	fs.StringVar(&cfg.RecordDir, "record-dir", cfg.RecordDir, "`directory` recordings are written to (<stream>/<stream>-<UTC time>.mp4); created when first written")
	fs.Var(&cfg.RecordMaxAge, "record-max-age", "finished recordings older than this are deleted (e.g. 720h); 0 keeps them")
	fs.Var(&cfg.RecordMaxSize, "record-max-size", "the oldest recordings are deleted while all of them take more than this (e.g. 50G); 0: no limit")
	fs.StringVar(&cfg.Hooks.OnRecordDone, "on-record-done", cfg.Hooks.OnRecordDone, "`URL` POSTed a JSON event (path, duration, size) when a recording file is finished")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	hlsFlags(fs, cfg)
	clusterFlags(fs, cfg)
	return fs
}

// listValue is a comma-separated list flag.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }
func (l *listValue) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}
