// Command fanout runs the SFU fan-out benchmark (package fanout) until
// `parley bench fanout` is wired.
//
//	fanout -viewers 300                 in-process server (server+tool CPU summed)
//	fanout -child -viewers 300          server in a child process (server CPU alone)
//	fanout -serve 127.0.0.1:8090        just the server (used by -child)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"time"

	"github.com/parley/parley/internal/bench/fanout"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o fanout.Options
	serve := fs.String("serve", "", "only serve SFU+WHIP on this loopback address and print its URL")
	child := fs.Bool("child", false, "start the server as a child process (so its CPU and RSS are measured alone)")
	profile := fs.String("cpuprofile", "", "write the server's CPU profile of the measurement window here")
	heap := fs.String("heapprofile", "", "write the server's heap profile at the end of the window here")
	fs.StringVar(&o.URL, "url", "", "server base URL (loopback); empty starts one")
	fs.IntVar(&o.ServerPID, "pid", 0, "server process to sample for CPU/RSS (with -url)")
	fs.StringVar(&o.StatsURL, "stats-url", "", "server's /debug/sfu/stats (with -url)")
	fs.IntVar(&o.Viewers, "viewers", 10, "WHEP viewers")
	fs.DurationVar(&o.Warmup, "warmup", 3*time.Second, "warm-up after the last join")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measurement window")
	fs.StringVar(&o.Stream, "stream", "bench", "stream name")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o.Logger = log

	if *serve != "" {
		srv, err := fanout.StartServer(ctx, *serve, log, true)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, srv.URL)
		<-ctx.Done()
		_ = srv.Close()
		return 0
	}
	if *child {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		cmd := exec.CommandContext(ctx, exe, "-serve", "127.0.0.1:0")
		cmd.Stderr = stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer func() {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
		}()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			fmt.Fprintf(stderr, "child server: %v\n", err)
			return 1
		}
		o.URL = strings.TrimSpace(line)
		o.ServerPID = cmd.Process.Pid
		o.ProfileURL = o.URL + "/debug/pprof/profile"
		o.StatsURL = o.URL + "/debug/sfu/stats"
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		o.CPUProfile = f
	}
	if *heap != "" {
		f, err := os.Create(*heap)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		o.HeapProfile = f
	}
	o.Progress = stderr
	res, err := fanout.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "fanout: %v\n", err)
		return 1
	}
	b, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(b))
	fmt.Fprint(stdout, res.Table())
	return 0
}
