package config

import "flag"

// hlsFlags registers the LL-HLS options (internal/hls).
func hlsFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.HLS, "hls", cfg.HLS, "on: every stream is served as LL-HLS at /hls/<stream>/index.m3u8 (per stream: hls: off|on|always in streams:), or off")
	fs.Var(&cfg.HLSIdle, "hls-idle", "a stream's HLS muxer stops when no HLS request came for this long")
	fs.IntVar(&cfg.HLSBlockingPerIP, "hls-blocking-per-ip", cfg.HLSBlockingPerIP, "blocking HLS playlist and part requests one client address may have waiting at once")
	fs.BoolVar(&cfg.HLSNetHTTP, "hls-nethttp", cfg.HLSNetHTTP, "serve HLS with net/http alone, without taking plain HTTP/1.1 keep-alive connections over for HLS (internal/httpconn); for comparison")
	fs.IntVar(&cfg.HLSRatePerIP, "hls-rate-per-ip", cfg.HLSRatePerIP, "HLS requests per second one client address may make (a player makes 10-30; raise it for a CDN or proxy not in --trusted-proxies)")
}

func (c *Config) validateHLS(bad func(string, ...any)) {
	if c.HLS != "on" && c.HLS != "off" {
		bad("hls: %q is not on or off", c.HLS)
	}
	if c.HLSIdle <= 0 {
		bad("hls-idle: must be > 0")
	}
	if c.HLSBlockingPerIP <= 0 {
		bad("hls-blocking-per-ip: must be > 0, got %d", c.HLSBlockingPerIP)
	}
	if c.HLSRatePerIP <= 0 {
		bad("hls-rate-per-ip: must be > 0, got %d", c.HLSRatePerIP)
	}
}

// HLSOf is a stream's HLS mode, "on", "off" or "always": the stream's
// hls: setting, else --hls (so --hls off with hls: on serves a few).
func (c *Config) HLSOf(stream string) string {
	if s, ok := c.Streams[stream]; ok && s.HLS != "" {
		return s.HLS
	}
	return c.HLS
}
