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
// so its CPU is measured apart from the load generator's.
func benchTurn(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley bench turn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o turnload.Options
	sockets := fs.Int("sockets", 0, "server UDP sockets (0 = one per CPU)")
	buffer := fs.Int("buffer", 0, "server socket buffer bytes (0 = 4 MiB, -1 = OS default)")
	fs.IntVar(&o.Allocations, "allocs", 16, "TURN allocations, one user each")
	fs.IntVar(&o.Rate, "rate", 50000, "packets per second the clients send in total")
	fs.IntVar(&o.Size, "size", 100, "payload bytes")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "sending time (at most 60 s)")
	fs.BoolVar(&o.Echo, "echo", false, "the peer echoes every packet (relayed both ways)")
	if err := fs.Parse(args); err != nil {
		return exitCodeFor(err)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "parley bench turn: %v\n", err)
		return 1
	}
	turnAddr := udp.LocalAddr().String()
	udp.Close()
	o.Secret = "bench-turn-secret-0123456789abcdef"
	child, err := startChildServer(ctx, "--turn", turnAddr, "--turn-secret", o.Secret,
		// Every allocation comes from loopback, one client address: the
		// per-address limit is raised to the tool's maximum with the quota.
		"--turn-allow-peers", "127.0.0.0/8,::1/128", "--turn-quota", "1000", "--turn-per-ip", "1000",
		"--turn-sockets", strconv.Itoa(*sockets), "--turn-buffer", strconv.Itoa(*buffer))
	if err != nil {
		fmt.Fprintf(stderr, "parley bench turn: %v\n", err)
		return 1
	}
	defer child.stop()
	o.Server, o.PID = turnAddr, child.pid
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
