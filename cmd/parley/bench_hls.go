package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/parley/parley/internal/bench/benchsrv"
	"github.com/parley/parley/internal/bench/hlsload"
	"github.com/parley/parley/internal/bench/proc"
)

// benchHLS runs the LL-HLS load tool (`parley bench hls`): one stream
// published over RTMP, N clients doing blocking playlist requests and
// part fetches. Without -url it starts `parley serve` as a child process
// with an RTMP listener on loopback, so the server's CPU is measured
// alone.
func benchHLS(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley bench hls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o hlsload.Options
	fs.StringVar(&o.URL, "url", "", "server base URL serving /hls/ (loopback only); empty starts `parley serve` as a child process")
	fs.StringVar(&o.RTMPURL, "rtmp-url", "", "with -url: the server's RTMP listener, rtmp://127.0.0.1:PORT, to publish the clip to; empty with -url: the stream is published by someone else")
	fs.IntVar(&o.ServerPID, "pid", 0, "with -url: the server process to sample for CPU")
	fs.IntVar(&o.Clients, "clients", 1000, "HLS clients")
	fs.IntVar(&o.PerAddress, "per-address", 10, "clients per loopback source address (127.1.x.y), so the server's per-address limits stay on")
	fs.DurationVar(&o.Warmup, "warmup", 3*time.Second, "warm-up after every client got its first part")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measurement window")
	fs.StringVar(&o.Stream, "stream", "bench", "stream name")
	fs.BoolVar(&o.Verbose, "v", false, "print every failed request")
	if err := fs.Parse(args); err != nil {
		return exitCodeFor(err)
	}
	if o.URL != "" && !benchsrv.LoopbackURL(o.URL) {
		fmt.Fprintln(stderr, "parley bench hls: -url must be a loopback address")
		return 2
	}
	if n, err := proc.RaiseFileLimit(uint64(2*o.Clients + 1024)); err != nil || n < uint64(2*o.Clients+1024) {
		fmt.Fprintf(stderr, "parley bench: open-file limit %d (%v): may be too low for %d clients\n", n, err, o.Clients)
	}
	o.Progress = stderr
	if o.URL == "" {
		addr, err := freeLoopbackAddr()
		if err != nil {
			fmt.Fprintf(stderr, "parley bench hls: %v\n", err)
			return 1
		}
		child, err := startChildServer(ctx, benchsrv.SetArg(benchsrv.ArgsFor(false), "--rtmp", addr)...)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench hls: %v\n", err)
			return 1
		}
		defer child.stop()
		o.URL, o.ServerPID, o.RTMPURL = child.url, child.pid, "rtmp://"+addr
	}
	res, err := hlsload.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "parley bench hls: %v\n", err)
		return 1
	}
	return report(stdout, res, res.Table())
}
