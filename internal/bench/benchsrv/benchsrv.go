// Package benchsrv starts the Parley server the media load tools measure:
// internal/server wired from a config, exactly as `parley serve` runs it,
// with HTTP and media on loopback and TURN off.
package benchsrv

import (
	"context"
	"log/slog"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
)

// Args are the `parley serve` flags of a child-process server (the
// listen address is added by the caller); Config is the same setup in
// process.
var Args = []string{"--turn", "off", "--media-udp", "127.0.0.1:0", "--media-tcp", "off", "--public-ip", "127.0.0.1"}

// Config is the server configuration Args give, with HTTP on a free
// loopback port.
func Config() config.Config {
	cfg := config.Default()
	cfg.HTTP = "127.0.0.1:0"
	cfg.TURN = "off"
	cfg.MediaUDP, cfg.MediaTCP = "127.0.0.1:0", "off"
	cfg.PublicIP = "127.0.0.1"
	return cfg
}

// Start runs an in-process server with Config; Close it when done.
func Start(ctx context.Context, log *slog.Logger) (*server.Server, error) {
	srv, err := server.New(Config(), log)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}
