// Command parley runs the Parley server and its tools.
//
//	parley [serve] [flags]   run the server (the default)
//	parley token [flags]     mint an access token (token secret, token keypair: make keys)
//	parley bench KIND        load tools (signal, turn, fanout, meeting)
//	parley version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run returns the exit code: 0 fine, 1 failed while running, 2 bad usage.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, getenv, stderr)
	case "token":
		return token(args, getenv, stdout, stderr)
	case "bench":
		return bench(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "parley", version)
		return 0
	case "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "parley: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Parley: self-hosted video calls, broadcasts and STUN/TURN in one binary.

Usage:
  parley [serve] [flags]   run the server (parley serve --help lists every option)
  parley token [flags]     print an access token for servers with auth (parley token --help;
                           parley token secret / keypair make the server's secret or keys)
  parley bench KIND        load tools: signal, turn, fanout, meeting (parley bench KIND --help)
  parley version           print the version
`)
}

func serve(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := config.Load(args, getenv, stderr)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "parley: bad configuration:\n%v\n", err)
		return 2
	}
	log := newLogger(cfg.LogLevel, stderr)
	srv, err := server.New(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "parley: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		log.Error("could not start", "err", err)
		return 1
	}
	srv.LogURLs()
	<-ctx.Done()
	stop()
	log.Info("shutting down: closing sessions and TURN allocations")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return 0
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
