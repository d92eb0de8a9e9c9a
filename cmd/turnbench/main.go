// Command turnbench measures the embedded TURN server with
// internal/turn/turnload. In the default mode it starts the server as a
// child process (so the server's CPU time is measured apart from the load
// generator's) on loopback, runs the load against it, and prints the
// result as JSON.
//
//	turnbench -rate 100000 -dur 5s                      # server + load
//	turnbench -mode server -listen 127.0.0.1:3478       # server only
//	turnbench -mode load -server 127.0.0.1:3478 -pid N  # load only
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
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/parley/parley/internal/turn"
	"github.com/parley/parley/internal/turn/turnload"
)

type flags struct {
	mode, listen, secret, cpuprofile string
	sockets, buffer                  int
	load                             turnload.Options
}

func main() {
	var f flags
	flag.StringVar(&f.mode, "mode", "both", "both | server | load")
	flag.StringVar(&f.listen, "listen", "127.0.0.1:0", "server listen address")
	flag.StringVar(&f.secret, "secret", "turnbench-secret", "TURN REST secret")
	flag.StringVar(&f.cpuprofile, "cpuprofile", "", "server mode: write a CPU profile here")
	flag.IntVar(&f.sockets, "sockets", 0, "server UDP sockets (0 = NumCPU)")
	flag.IntVar(&f.buffer, "buffer", 0, "server socket buffer bytes (0 = 4 MiB, -1 = OS default)")
	flag.StringVar(&f.load.Server, "server", "", "load mode: TURN server host:port")
	flag.IntVar(&f.load.PID, "pid", 0, "load mode: server pid for CPU accounting")
	flag.IntVar(&f.load.Allocations, "allocs", 16, "allocations")
	flag.IntVar(&f.load.Rate, "rate", 50000, "client packets per second")
	flag.IntVar(&f.load.Size, "size", 100, "payload bytes")
	flag.DurationVar(&f.load.Duration, "dur", 5*time.Second, "sending time")
	flag.BoolVar(&f.load.Echo, "echo", false, "peer echoes every packet back")
	flag.Parse()
	f.load.Secret = f.secret
	var err error
	switch f.mode {
	case "server":
		err = serve(f)
	case "load":
		err = load(f.load)
	case "both":
		err = both(f)
	default:
		err = fmt.Errorf("unknown -mode %q", f.mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "turnbench:", err)
		os.Exit(1)
	}
}

// serve runs the server until stdin closes or a signal arrives, printing
// "READY <udp addr>" once it listens.
func serve(f flags) error {
	srv, err := turn.New(turn.Config{
		Listen: f.listen, Secret: []byte(f.secret), Sockets: f.sockets, SocketBuffer: f.buffer, Quota: 1000,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	if f.cpuprofile != "" {
		pf, err := os.Create(f.cpuprofile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("READY %s\n", srv.UDPAddr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	<-ctx.Done()
	st, _ := json.Marshal(srv.Stats())
	fmt.Fprintf(os.Stderr, "server stats: %s\n", st)
	return nil
}

func load(o turnload.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := turnload.Run(ctx, o)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// both starts this binary in server mode as a child and loads it.
func both(f flags) error {
	args := []string{"-mode", "server", "-listen", f.listen, "-secret", f.secret,
		"-sockets", strconv.Itoa(f.sockets), "-buffer", strconv.Itoa(f.buffer)}
	if f.cpuprofile != "" {
		args = append(args, "-cpuprofile", f.cpuprofile)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	if err != nil || !ok {
		return errors.Join(errors.New("server did not start"), err)
	}
	f.load.Server, f.load.PID = addr, cmd.Process.Pid
	return load(f.load)
}
