package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/parley/parley/internal/bench/benchsrv"
	"github.com/parley/parley/internal/bench/fanout"
)

// benchFanout runs the SFU fan-out load tool (`parley bench fanout`): one
// WHIP (or, with -source rtmp, RTMP) publisher, N WHEP viewers,
// loss/latency/CPU/RSS over a fixed window.
// Without -url it starts `parley serve` on 127.0.0.1 as a child process,
// so the server's CPU and RSS are measured alone; -in-process runs the
// server inside the tool instead (for -cpuprofile; CPU is then summed).
func benchFanout(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley bench fanout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o fanout.Options
	fs.StringVar(&o.URL, "url", "", "server base URL serving /whip and /whep (loopback only; start it with --pending-per-ip above the join concurrency, as every viewer comes from loopback); empty starts `parley serve` as a child process")
	fs.StringVar(&o.OpsURL, "ops-url", "", "with -url: the server's operations listener (its --ops), where /metrics is read; empty means -url")
	inProcess := fs.Bool("in-process", false, "without -url: run the server inside this process (needed for -cpuprofile)")
	fs.IntVar(&o.ServerPID, "pid", 0, "server process to sample for CPU and RSS (with -url)")
	fs.IntVar(&o.Viewers, "viewers", 10, "WHEP viewers")
	fs.DurationVar(&o.Warmup, "warmup", 3*time.Second, "warm-up after the last viewer joined")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measurement window")
	fs.StringVar(&o.Stream, "stream", "bench", "stream name")
	fs.StringVar(&o.Source, "source", fanout.SourceWHIP, "publisher: whip (VP8 + Opus over WebRTC) or rtmp (H.264 that ffmpeg's libx264 encodes at the start, 640x360 30 fps at -video-bitrate, + Opus over enhanced RTMP, to the server's RTMP listener; needs ffmpeg)")
	fs.StringVar(&o.RTMPAudio, "rtmp-audio", fanout.AudioOpus, "with -source rtmp: opus (enhanced RTMP, passed through) or aac (a 440 Hz tone ffmpeg encodes; the server transcodes it to Opus with an ffmpeg child, a cost of its own; no audio latency)")
	fs.StringVar(&o.RTMPURL, "rtmp-url", "", "with -url and -source rtmp: the server's RTMP listener, rtmp://127.0.0.1:PORT (loopback only; the tool publishes to .../live/STREAM); the started server gets one on a free loopback port")
	fs.BoolVar(&o.AudioOnly, "audio-only", false, "publish and watch Opus only (a light show's screens)")
	fs.BoolVar(&o.External, "external", false, "the stream is published by someone else (e.g. a browser on /b/STREAM): start viewers only")
	video := fs.String("video", "", "loop this IVF file of VP8 frames (30 fps) instead of synthetic VP8")
	fs.IntVar(&o.VideoBitrate, "video-bitrate", 1_000_000, "synthetic VP8 (without -video) or, with -source rtmp, H.264 bitrate, bits/s")
	fs.BoolVar(&o.BareViewers, "bare-viewers", false, "viewers send NACKs only, no receiver reports or TWCC feedback (less server work than browsers)")
	fs.IntVar(&o.Stalled, "stalled", 0, "percentage of viewers that connect over ICE-TCP through a proxy of the tool that stops reading from the server when the window starts; their figures are reported apart (the started server gets --media-tcp "+benchsrv.MediaTCP+"; a -url server needs ICE-TCP on loopback)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the measurement window (in-process server only)")
	edge := fs.Bool("edge", false, "without -url: start two child servers as one cluster (node 1 runs the embedded NATS server); publish to node 1 (the origin), watch on node 2 (an edge, which relays the stream once); the CPU and RSS figures are the edge's")
	pin := fs.Bool("pin", false, "with -edge: pin node i to CPU i mod the CPU count (taskset)")
	if err := fs.Parse(args); err != nil {
		return exitCodeFor(err)
	}
	if *video != "" {
		b, err := os.ReadFile(*video)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench fanout: %v\n", err)
			return 1
		}
		o.Video = b
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench fanout: %v\n", err)
			return 1
		}
		defer f.Close()
		o.CPUProfile = f
	}
	o.Progress = stderr
	if o.URL == "" && *edge {
		if o.Source != fanout.SourceWHIP || o.Stalled > 0 {
			fmt.Fprintln(stderr, "parley bench fanout: -edge publishes over WHIP, without -stalled")
			return 2
		}
		c, tok, err := startMediaCluster(ctx, 2, *pin, o.Stream)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench fanout: %v\n", err)
			return 1
		}
		o.Token = tok
		defer c.stop()
		o.PublishURL = c.nodes[0].url
		o.URL, o.OpsURL, o.ServerPID = c.nodes[1].url, c.nodes[1].ops, c.nodes[1].pid
	}
	if o.URL == "" && !*inProcess {
		args := benchsrv.ArgsFor(o.Stalled > 0)
		if o.Source == fanout.SourceRTMP {
			addr, err := freeLoopbackAddr()
			if err != nil {
				fmt.Fprintf(stderr, "parley bench fanout: %v\n", err)
				return 1
			}
			args = benchsrv.SetArg(args, "--rtmp", addr)
			o.RTMPURL = "rtmp://" + addr
		}
		child, err := startChildServer(ctx, args...)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench fanout: %v\n", err)
			return 1
		}
		defer child.stop()
		o.URL, o.OpsURL, o.ServerPID = child.url, child.ops, child.pid
	}
	res, err := fanout.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "parley bench fanout: %v\n", err)
		return 1
	}
	return report(stdout, res, res.Table())
}
