package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	turnload "github.com/parley/parley/internal/bench/turn"
)

// benchTurn loads the embedded TURN server, run as a child `parley serve`
// so its CPU is measured apart from the load generator's, or, with
// -server, any TURN server that accepts REST credentials (coturn's
// use-auth-secret) for the same comparison.
func benchTurn(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley bench turn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o turnload.Options
	sockets := fs.Int("sockets", 0, "server UDP sockets (0 = one per CPU)")
	buffer := fs.Int("buffer", 0, "server socket buffer bytes (0 = 4 MiB, -1 = OS default)")
	server := fs.String("server", "", "load this external TURN server (UDP host:port on loopback, e.g. coturn) instead of a child `parley serve`; needs -secret and -pid")
	fs.StringVar(&o.Secret, "secret", "", "with -server: its REST shared secret (coturn static-auth-secret)")
	fs.IntVar(&o.PID, "pid", 0, "with -server: its process id, whose CPU time is measured")
	pprofAddr := fs.String("pprof", "", "without -server: the child server's --pprof address (loopback), to profile it during the run")
	fs.IntVar(&o.Allocations, "allocs", 16, "TURN allocations, one user each")
	fs.IntVar(&o.Rate, "rate", 50000, "packets per second the clients send in total")
	fs.IntVar(&o.Size, "size", 100, "payload bytes")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "sending time (at most 60 s)")
	fs.BoolVar(&o.Echo, "echo", false, "the peer echoes every packet (relayed both ways)")
	if err := fs.Parse(args); err != nil {
		return exitCodeFor(err)
	}
	if *server != "" {
		if o.Secret == "" || o.PID <= 0 {
			fmt.Fprintln(stderr, "parley bench turn: -server needs -secret and -pid")
			return 2
		}
		o.Server = *server
	} else {
		child, err := startTURNChild(ctx, &o, *sockets, *buffer, *pprofAddr)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench turn: %v\n", err)
			return 1
		}
		defer child.stop()
	}
	fmt.Fprintf(stderr, "sending %d packets/s of %d bytes through %d allocations for %v\n", o.Rate, o.Size, o.Allocations, o.Duration)
	res, err := turnload.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "parley bench turn: %v\n", err)
		return 1
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Fprintln(stdout, string(b))
	return 0
}

// startTURNChild starts `parley serve` with TURN on a free loopback port
// and fills in o's server, secret and pid.
func startTURNChild(ctx context.Context, o *turnload.Options, sockets, buffer int, pprofAddr string) (childServer, error) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return childServer{}, err
	}
	turnAddr := udp.LocalAddr().String()
	udp.Close()
	o.Secret = "bench-turn-secret-0123456789abcdef"
	args := []string{"--turn", turnAddr, "--turn-secret", o.Secret,
		// Every allocation comes from loopback, one client address: the
		// per-address limit is raised to the tool's maximum with the quota.
		"--turn-allow-peers", "127.0.0.0/8,::1/128", "--turn-quota", "1000", "--turn-per-ip", "1000",
		"--turn-sockets", strconv.Itoa(sockets), "--turn-buffer", strconv.Itoa(buffer)}
	if pprofAddr != "" {
		args = append(args, "--pprof", pprofAddr)
	}
	child, err := startChildServer(ctx, args...)
	if err != nil {
		return childServer{}, err
	}
	o.Server, o.PID = turnAddr, child.pid
	return child, nil
}
