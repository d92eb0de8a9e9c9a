package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/parley/parley/internal/bench/benchsrv"
	"github.com/parley/parley/internal/bench/meeting"
)

// benchMeeting runs the group-call load tool (`parley bench meeting`): N
// participants in one sfu room through the real signaling, each sending
// Opus and synthetic VP8 and receiving everyone else. Without -url it
// starts `parley serve` on 127.0.0.1 as a child process, so the server's
// CPU and RSS are measured alone; -in-process runs it inside the tool.
func benchMeeting(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley bench meeting", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o meeting.Options
	fs.StringVar(&o.URL, "url", "", "server base URL (loopback only); empty starts `parley serve` as a child process")
	inProcess := fs.Bool("in-process", false, "without -url: run the server inside this process (CPU and RSS are then summed)")
	pid := fs.Int("pid", 0, "server process to sample for CPU and RSS (with -url)")
	fs.IntVar(&o.Participants, "participants", 10, "members of the meeting, each publishing audio and video")
	fs.IntVar(&o.VideoBitrate, "video-bitrate", 500_000, "each participant's synthetic VP8 bitrate, bits/s")
	fs.StringVar(&o.Room, "room", "bench-meeting", "room name")
	fs.DurationVar(&o.Warmup, "warmup", 3*time.Second, "warm-up after every subscription flows")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measurement window")
	nodes := fs.Int("nodes", 1, "without -url: start this many child servers as nodes of one cluster (the first runs the embedded NATS server) and join participant i to node i mod n, so the room's media crosses nodes; CPU and RSS are the nodes' sum, and the first node's NATS traffic is reported")
	pin := fs.Bool("pin", false, "with -nodes: pin node i to CPU i mod the CPU count (taskset)")
	if err := fs.Parse(args); err != nil {
		return exitCodeFor(err)
	}
	o.Progress = stderr
	if *pid != 0 {
		o.ServerPIDs = []int{*pid}
	}
	if o.URL == "" && *nodes > 1 {
		c, tok, err := startMediaCluster(ctx, *nodes, *pin, o.Room)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench meeting: %v\n", err)
			return 1
		}
		o.Token = tok
		defer c.stop()
		o.URL, o.OpsURL, o.Nodes, o.ServerPIDs = c.endpoints()
	}
	if o.URL == "" && !*inProcess {
		child, err := startChildServer(ctx, benchsrv.Args...)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench meeting: %v\n", err)
			return 1
		}
		defer child.stop()
		o.URL, o.ServerPIDs = child.url, []int{child.pid}
	}
	res, err := meeting.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "parley bench meeting: %v\n", err)
		return 1
	}
	return report(stdout, res, res.Table())
}
