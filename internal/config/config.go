// Package config holds Parley's settings: defaults that run with no file,
// then a YAML file, then PARLEY_* environment variables, then flags.
// Nothing else in Parley reads flags or the environment.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/parley/parley/pkg/protocol"
)

// Config is everything a Parley server needs to start.
type Config struct {
	HTTP             string                `yaml:"http"`              // HTTP listen address
	TURN             string                `yaml:"turn"`              // STUN/TURN UDP+TCP listen address, or "off"
	TURNTLS          string                `yaml:"turn_tls"`          // TURN over TLS listen address (the server's certificate), or "off"
	PublicIP         string                `yaml:"public_ip"`         // announced in relay addresses and ICE
	TURNSecret       string                `yaml:"turn_secret"`       // TURN REST shared secret; random per start if empty
	TURNAllow        []string              `yaml:"turn_allow_peers"`  // CIDRs relaying may reach despite the deny list
	TURNQuota        int                   `yaml:"turn_quota"`        // allocations per user
	TURNTTL          Duration              `yaml:"turn_ttl"`          // lifetime of handed-out TURN credentials
	TURNExternal     []string              `yaml:"turn_urls"`         // announce these URLs instead of the embedded server
	TURNSockets      int                   `yaml:"turn_sockets"`      // UDP sockets (SO_REUSEPORT readers); 0 = one per CPU
	TURNBuffer       int                   `yaml:"turn_buffer"`       // socket buffer bytes; 0 = 4 MiB, -1 = the OS default
	SFUCapacity      int                   `yaml:"sfu_room_capacity"` // members per server-routed room
	RoomCapacity     int                   `yaml:"room_capacity"`
	Rooms            map[string]RoomConfig `yaml:"rooms"` // per-room overrides
	MaxRooms         int                   `yaml:"max_rooms"`
	AllowOrigins     []string              `yaml:"allow_origins"` // other sites' origins that may use /ws and /api/session
	AuthSecret       string                `yaml:"auth_secret"`
	AuthSecretFile   string                `yaml:"auth_secret_file"`    // read AuthSecret from this file
	AuthPublicKey    string                `yaml:"auth_public_key"`     // PEM file of ES256/Ed25519 public keys tokens may be signed for
	AuthJWKS         string                `yaml:"auth_jwks"`           // JWKS file of public keys tokens may be signed for
	TURNSecretFile   string                `yaml:"turn_secret_file"`    // read TURNSecret from this file
	PublicHost       []string              `yaml:"public_host"`         // host names the server is reached at (same-origin checks)
	TrustedProxies   []string              `yaml:"trusted_proxies"`     // CIDRs whose X-Forwarded-For / Forwarded name the client
	Ops              string                `yaml:"ops"`                 // operations listener (/metrics, status, management APIs), or off
	RTMP             string                `yaml:"rtmp"`                // RTMP listener (OBS, ffmpeg publish; players read), or off
	RTSP             string                `yaml:"rtsp"`                // RTSP listener (cameras push, players read), or off
	RTSPUDP          string                `yaml:"rtsp_udp"`            // RTSP's RTP port for the UDP transport (RTCP the next), "" for 8000 on the RTSP host, or off
	SRT              string                `yaml:"srt"`                 // SRT listener (encoders push, players read), or off
	StreamConnsPerIP int                   `yaml:"stream_conns_per_ip"` // RTMP/RTSP/SRT connections per client address
	StreamMaxConns   int                   `yaml:"stream_max_conns"`    // RTMP/RTSP/SRT connections in all, per listener
	MaxCameras       int                   `yaml:"max_cameras"`         // IP camera streams pulled at once (config and API together)
	MaxWebRTCViewers int                   `yaml:"max_webrtc_viewers"`  // WebRTC (WHEP) viewers per stream, 0 = unlimited; past it viewers play HLS (per stream: streams.<name>.max_webrtc_viewers)
	MaxSessions      int                   `yaml:"max_sessions"`        // signaling connections at once
	ConnsPerIP       int                   `yaml:"conns_per_ip"`        // signaling connections per client address
	RoomsPerIP       int                   `yaml:"rooms_per_ip"`        // rooms one client address may create per minute
	JoinTimeout      Duration              `yaml:"join_timeout"`        // a connection that has not joined a room by then is closed
	OutboxBytes      int                   `yaml:"outbox_bytes"`        // bytes queued for a member before it is cut off
	ByteRate         int                   `yaml:"byte_rate"`           // signaling bytes per second per connection (sustained)
	ByteBurst        int                   `yaml:"byte_burst"`          // signaling bytes allowed in a burst
	BodyTimeout      Duration              `yaml:"body_timeout"`        // time to read an HTTP request body
	PendingPerIP     int                   `yaml:"pending_per_ip"`      // WHIP/WHEP sessions per client address still connecting
	ICETimeout       Duration              `yaml:"ice_timeout"`         // a WHIP/WHEP session not connected by then is dropped
	ReattachGrace    Duration              `yaml:"reattach_grace"`      // how long viewers wait for a stream's publisher to come back
	TURNPerIP        int                   `yaml:"turn_per_ip"`         // TURN allocations per client address, across usernames
	TLSCert          string                `yaml:"tls_cert"`
	TLSKey           string                `yaml:"tls_key"`
	TLSSelfSigned    bool                  `yaml:"tls_self_signed"`
	MaxMessage       int                   `yaml:"max_message"`    // bytes per signaling message
	RateLimit        float64               `yaml:"rate_limit"`     // messages per second per connection (sustained)
	RateBurst        int                   `yaml:"rate_burst"`     // messages allowed in a burst
	Outbox           int                   `yaml:"outbox"`         // queued messages per member before it is cut off
	PingInterval     Duration              `yaml:"ping_interval"`  // WebSocket keepalive; dead peers are dropped after 2 intervals
	PollTimeout      Duration              `yaml:"poll_timeout"`   // long-poll wait
	SessionIdle      Duration              `yaml:"session_idle"`   // HTTP sessions idle longer are reaped
	ResumeGrace      Duration              `yaml:"resume_grace"`   // a dropped member is kept this long for a resume (0: not at all)
	MediaUDP         string                `yaml:"media_udp"`      // SFU ICE UDP mux address
	MediaTCP         string                `yaml:"media_tcp"`      // SFU ICE TCP mux address ("off" disables)
	Pprof            string                `yaml:"pprof"`          // Go profiler listen address ("" = off)
	MediaNoBatch     bool                  `yaml:"media_no_batch"` // send each media datagram with its own system call (for comparison)
	LogLevel         string                `yaml:"log_level"`

	// MaxPublishBitrate is the most the SFU asks a publisher to send (REMB,
	// bit/s); 0 = sfu.DefaultMaxPublishBitrate.
	MaxPublishBitrate int `yaml:"max_publish_bitrate"`

	// Who may publish and read streams beyond the token (internal/access).
	PublishAllow []string                `yaml:"publish_allow"` // CIDRs that may publish streams (empty: everyone)
	ReadAllow    []string                `yaml:"read_allow"`    // CIDRs that may read streams (empty: everyone)
	StreamAccess map[string]StreamAccess `yaml:"stream_access"` // per-stream (or pattern) allow/deny lists
	Hooks        Hooks                   `yaml:"hooks"`         // on_publish, on_play, on_done webhooks
	Streams      map[string]Stream       `yaml:"streams"`       // IP cameras pulled over RTSP, by stream name
	DataDir      string                  `yaml:"data_dir"`      // where state written at run time lives (streams added through the API)

	// Recording (internal/record; record.go): where files go and how
	// long they are kept. Per-stream settings are in Stream.
	RecordDir     string   `yaml:"record_dir"`      // recordings' directory
	RecordMaxAge  Duration `yaml:"record_max_age"`  // finished recordings older than this are deleted; 0 keeps them
	RecordMaxSize ByteSize `yaml:"record_max_size"` // the oldest recordings are deleted past this total; 0: no limit

	// LL-HLS of every stream (internal/hls, docs/hls.md; hls.go here).
	HLS              string   `yaml:"hls"`                 // on (/hls/<stream>/index.m3u8 for every stream) or off
	HLSIdle          Duration `yaml:"hls_idle"`            // a stream's muxer stops when no HLS request came for this long
	HLSBlockingPerIP int      `yaml:"hls_blocking_per_ip"` // blocking playlist/part requests one client address may have waiting
	HLSRatePerIP     int      `yaml:"hls_rate_per_ip"`     // HLS requests per second one client address may make
	HLSNetHTTP       bool     `yaml:"hls_nethttp"`         // serve HLS with net/http alone, without the keep-alive loop (internal/httpconn; for comparison)

	// Clustering over NATS (internal/cluster, docs/cluster.md; cluster.go here).
	Cluster           string   `yaml:"cluster"`          // "" alone, "embedded", or nats://host:4222,...
	ClusterListen     string   `yaml:"cluster_listen"`   // the embedded NATS server's client address
	ClusterNode       string   `yaml:"cluster_node"`     // this node's name ("" random per start)
	ClusterTTL        Duration `yaml:"cluster_ttl"`      // a silent node is dropped after this long
	ClusterToken      string   `yaml:"cluster_token"`    // NATS token
	ClusterCreds      string   `yaml:"cluster_creds"`    // NATS credentials file
	ClusterTLSCert    string   `yaml:"cluster_tls_cert"` // NATS TLS client certificate
	ClusterTLSKey     string   `yaml:"cluster_tls_key"`
	ClusterTLSCA      string   `yaml:"cluster_tls_ca"`
	ClusterReplicas   int      `yaml:"cluster_replicas"`     // buckets' replicas on a NATS cluster
	ClusterURL        string   `yaml:"cluster_url"`          // the base URL clients reach this node at ("" its listener's)
	ClusterRedirect   bool     `yaml:"cluster_redirect"`     // WHEP on a node that is not the stream's origin answers 307 to it
	ClusterConnsPerIP int      `yaml:"cluster_conns_per_ip"` // the embedded NATS server's connections per client address
}

// RoomConfig overrides settings for one named room.
type RoomConfig struct {
	Capacity int    `yaml:"capacity"`
	Mode     string `yaml:"mode"` // "p2p" or "sfu"
}

// Default returns the settings `parley` runs with when given nothing.
func Default() Config {
	return Config{
		HTTP:         ":8080",
		TURN:         ":3478",
		TURNTLS:      ":5349",
		TURNQuota:    10,
		TURNTTL:      Duration(10 * time.Minute),
		RoomCapacity: 16,
		SFUCapacity:  50,
		// Broadcast chat rooms (chat.<stream>) hold a broadcast's viewers.
		Rooms:             map[string]RoomConfig{"chat.*": {Capacity: 1000}},
		MaxRooms:          10000,
		MaxMessage:        64 << 10,
		RateLimit:         50,
		RateBurst:         200,
		Outbox:            256,
		PingInterval:      Duration(5 * time.Second),
		PollTimeout:       Duration(25 * time.Second),
		SessionIdle:       Duration(60 * time.Second),
		ResumeGrace:       Duration(15 * time.Second),
		MediaUDP:          ":8443",
		MediaTCP:          ":8443",
		LogLevel:          "info",
		Ops:               "127.0.0.1:9090",
		RTMP:              ":1935",
		RTSP:              ":8554",
		SRT:               ":8890",
		StreamConnsPerIP:  10,
		StreamMaxConns:    1000,
		MaxCameras:        256,
		MaxSessions:       100000,
		ConnsPerIP:        200,
		RoomsPerIP:        60,
		JoinTimeout:       Duration(10 * time.Second),
		OutboxBytes:       1 << 20,
		ByteRate:          256 << 10,
		ByteBurst:         1 << 20,
		BodyTimeout:       Duration(10 * time.Second),
		PendingPerIP:      10,
		ICETimeout:        Duration(10 * time.Second),
		ReattachGrace:     Duration(15 * time.Second),
		TURNPerIP:         32,
		Hooks:             Hooks{Timeout: Duration(5 * time.Second)},
		DataDir:           "parley-data",
		RecordDir:         "recordings",
		HLS:               "on",
		HLSIdle:           Duration(30 * time.Second),
		HLSBlockingPerIP:  100,
		HLSRatePerIP:      300,
		ClusterTTL:        Duration(15 * time.Second),
		ClusterReplicas:   1,
		ClusterConnsPerIP: 16,
	}
}

var roomPatternRE = regexp.MustCompile(`^[A-Za-z0-9_.*?-]{1,64}$`)

// Validate reports every problem at once, one per line.
func (c *Config) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if _, _, err := net.SplitHostPort(c.HTTP); err != nil {
		bad("http: %q is not host:port: %v", c.HTTP, err)
	}
	for _, a := range []struct{ name, v string }{{"turn", c.TURN}, {"turn-tls", c.TURNTLS}} {
		if a.v == "off" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			bad("%s: %q is not host:port or off: %v", a.name, a.v, err)
		}
	}
	for _, a := range []struct{ name, v string }{{"media-udp", c.MediaUDP}, {"media-tcp", c.MediaTCP}} {
		if a.v == "off" || a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			bad("%s: %q is not host:port or off: %v", a.name, a.v, err)
		}
	}
	if c.Pprof != "" && c.Pprof != "off" {
		// The profiler has no authentication: it may only listen on loopback.
		host, _, err := net.SplitHostPort(c.Pprof)
		ip, perr := netip.ParseAddr(host)
		if err != nil || (host != "localhost" && (perr != nil || !ip.IsLoopback())) {
			bad("pprof: %q must be a loopback host:port (127.0.0.1:6060, [::1]:6060, localhost:6060) or off", c.Pprof)
		}
	}
	if c.PublicIP != "" {
		if _, err := netip.ParseAddr(c.PublicIP); err != nil {
			bad("public-ip: %q is not an IP address", c.PublicIP)
		}
	}
	for _, p := range c.TURNAllow {
		if _, err := netip.ParsePrefix(strings.TrimSpace(p)); err != nil {
			bad("turn-allow-peers: %q is not a CIDR", p)
		}
	}
	positive := []struct {
		name string
		v    int
	}{{"room-capacity", c.RoomCapacity}, {"sfu-room-capacity", c.SFUCapacity}, {"max-rooms", c.MaxRooms}, {"max-message", c.MaxMessage},
		{"rate-burst", c.RateBurst}, {"outbox", c.Outbox}, {"turn-quota", c.TURNQuota},
		{"max-sessions", c.MaxSessions}, {"conns-per-ip", c.ConnsPerIP}, {"rooms-per-ip", c.RoomsPerIP},
		{"outbox-bytes", c.OutboxBytes}, {"byte-rate", c.ByteRate}, {"byte-burst", c.ByteBurst},
		{"pending-per-ip", c.PendingPerIP}, {"turn-per-ip", c.TURNPerIP},
		{"stream-conns-per-ip", c.StreamConnsPerIP}, {"stream-max-conns", c.StreamMaxConns}, {"max-cameras", c.MaxCameras}}
	for _, p := range positive {
		if p.v <= 0 {
			bad("%s: must be > 0, got %d", p.name, p.v)
		}
	}
	if c.MaxWebRTCViewers < 0 {
		bad("max-webrtc-viewers: must be >= 0 (0: unlimited), got %d", c.MaxWebRTCViewers)
	}
	if c.MaxMessage > 16<<20 {
		bad("max-message: %d is over the 16 MiB ceiling", c.MaxMessage)
	}
	if c.ByteBurst < c.MaxMessage {
		bad("byte-burst: %d is smaller than max-message %d (a largest message could never be sent)", c.ByteBurst, c.MaxMessage)
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(strings.TrimSpace(p)); err != nil {
			bad("trusted-proxies: %q is not a CIDR", p)
		}
	}
	for _, l := range []struct{ name, addr string }{{"ops", c.Ops}, {"rtmp", c.RTMP}, {"rtsp", c.RTSP}, {"rtsp-udp", c.RTSPUDP}, {"srt", c.SRT}} {
		if l.addr != "" && l.addr != "off" {
			if _, _, err := net.SplitHostPort(l.addr); err != nil {
				bad("%s: %q is not host:port or off: %v", l.name, l.addr, err)
			}
		}
	}
	if c.RTSPUDP != "" && c.RTSPUDP != "off" {
		if _, p, err := net.SplitHostPort(c.RTSPUDP); err == nil {
			if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65534 || n%2 != 0 {
				bad("rtsp-udp: the RTP port of %q must be even (RTCP takes the next one)", c.RTSPUDP)
			}
		}
	}
	if c.TURNSockets < 0 || c.TURNSockets > 64 {
		bad("turn-sockets: must be 0..64, got %d", c.TURNSockets)
	}
	if !(c.RateLimit > 0) || math.IsInf(c.RateLimit, 1) { // NaN fails > 0
		bad("rate-limit: must be a number > 0, got %v", c.RateLimit)
	}
	durations := []struct {
		name string
		v    Duration
	}{{"turn-ttl", c.TURNTTL}, {"ping-interval", c.PingInterval}, {"poll-timeout", c.PollTimeout}, {"session-idle", c.SessionIdle},
		{"join-timeout", c.JoinTimeout}, {"body-timeout", c.BodyTimeout}, {"ice-timeout", c.ICETimeout}, {"reattach-grace", c.ReattachGrace}}
	for _, d := range durations {
		if d.v <= 0 {
			bad("%s: must be > 0", d.name)
		}
	}
	if c.ResumeGrace < 0 {
		bad("resume-grace: must be >= 0")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert and tls-key go together")
	}
	if c.TLSSelfSigned && c.TLSCert != "" {
		bad("tls-self-signed and tls-cert exclude each other")
	}
	for _, o := range c.AllowOrigins {
		if _, err := path.Match(o, ""); err != nil || o == "*" {
			bad("allow-origins: %q is not a host pattern (and * alone would allow every site)", o)
		}
	}
	for name, r := range c.Rooms {
		if !roomPatternRE.MatchString(name) {
			bad("rooms: %q is not a room name or pattern (A-Z a-z 0-9 _ . - and the wildcards * ?)", name)
		}
		if r.Capacity < 0 {
			bad("rooms.%s.capacity: must be >= 0", name)
		}
		if r.Mode != "" && r.Mode != "p2p" && r.Mode != "sfu" {
			bad("rooms.%s.mode: %q is not p2p or sfu", name, r.Mode)
		}
	}
	for name, st := range c.Streams {
		if !protocol.ValidRoom(name) {
			bad("streams: %q is not a stream name (1-64 characters of A-Z a-z 0-9 _ . -)", name)
		} else if err := st.CheckSettings(); err != nil {
			bad("streams.%s: %v", name, err)
		}
	}
	if c.DataDir == "" {
		bad("data-dir: must not be empty")
	}
	c.validateRecord(bad)
	c.validateSecrets(bad)
	c.validateAccess(bad)
	c.validateHLS(bad)
	c.validateCluster(bad)
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level: %q is not debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
}

// roomConfig finds a room's settings: its exact name first, then the
// longest matching pattern (rooms: {"chat.*": ...}).
func (c *Config) roomConfig(room string) (RoomConfig, bool) {
	return Lookup(c.Rooms, room)
}

// Lookup finds name's entry in a map keyed by names and path.Match
// patterns: the exact name first, then the longest matching pattern
// (between equally long ones, the smaller string).
func Lookup[T any](m map[string]T, name string) (T, bool) {
	if r, ok := m[name]; ok {
		return r, true
	}
	best, found := "", false
	for pat := range m {
		if ok, _ := path.Match(pat, name); ok && (!found || len(pat) > len(best) || (len(pat) == len(best) && pat < best)) {
			best, found = pat, true
		}
	}
	return m[best], found
}

// CapacityOf is the capacity of the named room in the given mode: the
// room's own setting, else the default for server-routed or peer-to-peer
// rooms (a mesh of browsers tops out far sooner than the SFU).
func (c *Config) CapacityOf(room, mode string) int {
	if r, ok := c.roomConfig(room); ok && r.Capacity > 0 {
		return r.Capacity
	}
	if mode == "sfu" {
		return c.SFUCapacity
	}
	return c.RoomCapacity
}

// ModeOf is the configured mode of the named room ("" when not configured).
func (c *Config) ModeOf(room string) string {
	r, _ := c.roomConfig(room)
	return r.Mode
}

// MaxWebRTCViewersOf is the cap on a stream's WebRTC viewers: the
// stream's own max_webrtc_viewers, else --max-webrtc-viewers; 0 means
// unlimited.
func (c *Config) MaxWebRTCViewersOf(stream string) int {
	if st, ok := c.Streams[stream]; ok && st.MaxWebRTCViewers > 0 {
		return st.MaxWebRTCViewers
	}
	return c.MaxWebRTCViewers
}

// Duration is a time.Duration that reads "5s" from YAML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Set parses like time.ParseDuration (for flag.Value).
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalText lets YAML read durations as strings.
func (d *Duration) UnmarshalText(b []byte) error { return d.Set(string(b)) }

// MarshalText writes durations as strings.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
