// Package benchsrv starts the Parley server the media load tools measure:
// internal/server wired from a config, exactly as `parley serve` runs it,
// with HTTP and media on loopback and TURN off.
package benchsrv

import (
	"context"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
)

// Args are the `parley serve` flags of a child-process server (the
// listen address is added by the caller; RTMP is off, SetArg turns it on);
// Config is the same setup in
// process. ICE-TCP is off: see ArgsFor for runs that need it. Every
// viewer of the load tools comes from loopback, one client address, and
// they join many at a time: the limit on sessions still connecting per
// address (--pending-per-ip) is raised to PendingPerIP.
var Args = []string{"--turn", "off", "--media-udp", "127.0.0.1:0", "--media-tcp", "off", "--public-ip", "127.0.0.1",
	"--rtmp", "off", "--pending-per-ip", strconv.Itoa(PendingPerIP)}

// PendingPerIP is the load tools' --pending-per-ip: more than any join
// concurrency they use.
const PendingPerIP = 10000

// MediaTCP is the ICE-TCP address of runs with ICE-TCP viewers: loopback,
// port 0, which the SFU turns into the UDP port's number.
const MediaTCP = "127.0.0.1:0"

// ArgsFor is Args, with ICE-TCP on (MediaTCP) when iceTCP is set.
func ArgsFor(iceTCP bool) []string {
	a := append([]string(nil), Args...)
	if iceTCP {
		a = SetArg(a, "--media-tcp", MediaTCP)
	}
	return a
}

// SetArg sets flag name's value in args (a list of "--flag value"
// pairs), appending the pair when the flag is not there; args is changed
// in place.
func SetArg(args []string, name, value string) []string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			args[i+1] = value
			return args
		}
	}
	return append(args, name, value)
}

// Config is the server configuration Args give, with HTTP on a free
// loopback port.
func Config() config.Config { return ConfigFor(false) }

// ConfigFor is the configuration ArgsFor(iceTCP) gives.
func ConfigFor(iceTCP bool) config.Config {
	cfg := config.Default()
	cfg.HTTP = "127.0.0.1:0"
	cfg.TURN = "off"
	cfg.MediaUDP, cfg.MediaTCP = "127.0.0.1:0", "off"
	cfg.RTMP = "off"
	cfg.RTSP, cfg.SRT = "off", "off"
	if iceTCP {
		cfg.MediaTCP = MediaTCP
	}
	cfg.PublicIP = "127.0.0.1"
	cfg.PendingPerIP = PendingPerIP
	cfg.Ops = "127.0.0.1:0" // /metrics for the load tools, on a free port
	return cfg
}

// RTMP is the RTMP listener of runs with an RTMP publisher: loopback, a
// free port (Server.RTMPAddr tells which).
const RTMP = "127.0.0.1:0"

// WithRTMP is cfg with the RTMP listener on (RTMP).
func WithRTMP(cfg config.Config) config.Config {
	cfg.RTMP = RTMP
	return cfg
}

// Start runs an in-process server with Config; Close it when done.
func Start(ctx context.Context, log *slog.Logger) (*server.Server, error) {
	return StartConfig(ctx, Config(), log)
}

// StartConfig runs an in-process server with cfg; Close it when done.
func StartConfig(ctx context.Context, cfg config.Config, log *slog.Logger) (*server.Server, error) {
	srv, err := server.New(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}

// LoopbackURL reports whether u is a URL of a loopback host (127.0.0.0/8,
// ::1, localhost): the load tools send traffic only there.
func LoopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}
