package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/parley/parley/internal/bench/benchsrv"
	"github.com/parley/parley/internal/bench/proc"
	"github.com/parley/parley/internal/bench/soak"
)

// benchSoak runs the soak (`parley bench soak`): signaling clients and
// media sessions joining and leaving for a long while, the server's
// goroutines and heap read before, during and after. Without -url it
// starts `parley serve` as a child process with its profiler on loopback.
func benchSoak(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley bench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o soak.Options
	fs.StringVar(&o.URL, "url", "", "server base URL (loopback only); empty starts `parley serve` as a child process")
	fs.StringVar(&o.OpsURL, "ops-url", "", "with -url: the server's --ops listener (/metrics)")
	fs.StringVar(&o.PprofURL, "pprof-url", "", "with -url: the server's --pprof listener (forced GC, profiles)")
	fs.IntVar(&o.ServerPID, "pid", 0, "with -url: the server process, for its RSS")
	fs.IntVar(&o.Clients, "clients", 1000, "signaling clients present at any time")
	fs.IntVar(&o.RoomSize, "room-size", 10, "signaling members per room")
	fs.IntVar(&o.Sessions, "sessions", 50, "media sessions (pion peers publishing VP8 + Opus in SFU rooms) present at any time")
	fs.IntVar(&o.MediaRoomSize, "media-room-size", 5, "media sessions per SFU room")
	fs.DurationVar(&o.Stay, "stay", 20*time.Second, "mean time a signaling client stays before leaving and coming back (media sessions: twice that)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Minute, "how long clients come and go")
	fs.DurationVar(&o.Sample, "sample", time.Minute, "a reading of the server this often during the churn")
	fs.IntVar(&o.VideoBitrate, "video-bitrate", 150_000, "media sessions' video bitrate, bits/s")
	fs.StringVar(&o.ProfileDir, "profiles", "", "directory for the server's goroutine and heap profiles before and after (empty: not saved)")
	if err := fs.Parse(args); err != nil {
		return exitCodeFor(err)
	}
	if o.URL != "" && (!benchsrv.LoopbackURL(o.URL) || o.OpsURL == "" || o.PprofURL == "") {
		fmt.Fprintln(stderr, "parley bench soak: -url must be a loopback address, with -ops-url and -pprof-url")
		return 2
	}
	if n, err := proc.RaiseFileLimit(uint64(4*o.Clients + 1024)); err != nil || n < uint64(4*o.Clients+1024) {
		fmt.Fprintf(stderr, "parley bench: open-file limit %d (%v): may be too low for %d clients\n", n, err, o.Clients)
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			fmt.Fprintf(stderr, "parley bench soak: %v\n", err)
			return 1
		}
	}
	o.Progress = stderr
	if o.URL == "" {
		pprofAddr, err := freeLoopbackAddr()
		if err != nil {
			fmt.Fprintf(stderr, "parley bench soak: %v\n", err)
			return 1
		}
		child, err := startChildServer(ctx, append(benchsrv.ArgsFor(false), "--pprof", pprofAddr)...)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench soak: %v\n", err)
			return 1
		}
		defer child.stop()
		o.URL, o.OpsURL, o.PprofURL, o.ServerPID = child.url, child.ops, "http://"+pprofAddr, child.pid
	}
	res, err := soak.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "parley bench soak: %v\n", err)
		return 1
	}
	return report(stdout, res, res.Table())
}
