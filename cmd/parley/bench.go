package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"time"

	"github.com/parley/parley/internal/bench/proc"
	"github.com/parley/parley/internal/bench/signaling"
)

func bench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: parley bench signal|turn|fanout|meeting|hls|soak [flags]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	kind, args := args[0], args[1:]
	switch kind {
	case "signal":
		return benchSignal(ctx, args, stdout, stderr)
	case "turn":
		return benchTurn(ctx, args, stdout, stderr)
	case "fanout":
		return benchFanout(ctx, args, stdout, stderr)
	case "meeting":
		return benchMeeting(ctx, args, stdout, stderr)
	case "hls":
		return benchHLS(ctx, args, stdout, stderr)
	case "soak":
		return benchSoak(ctx, args, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "parley bench: unknown kind %q (signal, turn, fanout, meeting, hls, soak)\n", kind)
		return 2
	}
}

func benchSignal(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley bench signal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o signaling.Options
	url := fs.String("url", "", "server to load (loopback only); empty starts `parley serve` on 127.0.0.1 as a child process")
	fs.StringVar(&o.OpsURL, "ops-url", "", "with -url: the server's operations listener (its --ops), where /metrics is read; empty means -url")
	fs.IntVar(&o.Clients, "clients", 1000, "WebSocket clients")
	fs.IntVar(&o.RoomSize, "room-size", 10, "members per room")
	fs.DurationVar(&o.Interval, "interval", time.Second, "each client signals a room-mate this often")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "length of the relay phase")
	fs.IntVar(&o.PerAddress, "per-address", 100, "clients per loopback source address (127.1.x.y), so the server's per-address limits stay on; 0: all from one address")
	pin := fs.Bool("pin", false, "with -nodes: pin node i to CPU i mod the CPU count (taskset), as if each node had its own machine's cores")
	pprofAddr := fs.String("pprof", "", "the child server's --pprof address (loopback), to profile it during the run; with -nodes, the first node's (it runs the NATS server)")
	nodes := fs.Int("nodes", 1, "without -url: start this many child servers as nodes of one cluster (the first runs the embedded NATS server) and spread the clients over them, each room's members alternating between nodes, so that with 2 nodes and an even -room-size every signal crosses nodes")
	if err := fs.Parse(args); err != nil {
		return exitCodeFor(err)
	}
	o.Progress = stderr
	o.URL = *url
	// Each client is a socket here and one in the server: raise the file
	// limit this process and the child server inherit.
	if n, err := proc.RaiseFileLimit(uint64(2*o.Clients + 1024)); err != nil || n < uint64(2*o.Clients+1024) {
		fmt.Fprintf(stderr, "parley bench: open-file limit %d (%v): may be too low for %d clients\n", n, err, o.Clients)
	}
	if o.URL == "" && *nodes > 1 {
		stop, err := startClusterChildren(ctx, &o, *nodes, *pprofAddr, *pin)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench: %v\n", err)
			return 1
		}
		defer stop()
	}
	if o.URL == "" {
		extra := []string{"--turn", "off", "--media-udp", "off", "--max-rooms", "100000", "--max-sessions", fmt.Sprint(o.Clients + 1000)}
		if *pprofAddr != "" {
			extra = append(extra, "--pprof", *pprofAddr)
		}
		child, err := startChildServer(ctx, extra...)
		if err != nil {
			fmt.Fprintf(stderr, "parley bench: %v\n", err)
			return 1
		}
		defer child.stop()
		o.URL, o.OpsURL, o.ServerPIDs = child.url, child.ops, []int{child.pid}
	}
	res, err := signaling.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "parley bench signal: %v\n", err)
		return 1
	}
	return report(stdout, res, res.Table())
}

func report(stdout io.Writer, res any, table string) int {
	b, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(b))
	fmt.Fprint(stdout, table)
	return 0
}

func exitCodeFor(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// childServer is a `parley serve` child process.
type childServer struct {
	url  string // main port
	ops  string // operations listener (/metrics)
	pid  int
	stop func()
}

// freeLoopbackAddr is a TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startChildServer runs this binary's `serve` on free loopback ports so
// the load tool's own memory does not blur the server's figures.
func startChildServer(ctx context.Context, extra ...string) (childServer, error) {
	return startChildServerOn(ctx, -1, extra...)
}

// startChildServerOn is startChildServer with the child pinned to one CPU
// (`taskset -c cpu`) when cpu >= 0.
func startChildServerOn(ctx context.Context, cpu int, extra ...string) (childServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return childServer{}, err
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return childServer{}, err
	}
	opsAddr, err := freeLoopbackAddr()
	if err != nil {
		return childServer{}, err
	}
	args := append([]string{"serve", "--http", addr, "--ops", opsAddr, "--log-level", "warn"}, extra...)
	if cpu >= 0 {
		args = append([]string{"-c", fmt.Sprint(cpu), exe}, args...)
		if exe, err = exec.LookPath("taskset"); err != nil {
			return childServer{}, fmt.Errorf("pinning a server to a CPU: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return childServer{}, fmt.Errorf("start server: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	url := "http://" + addr
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			return childServer{url: url, ops: "http://" + opsAddr, pid: cmd.Process.Pid, stop: stop}, nil
		}
	}
	stop()
	return childServer{}, errors.New("server did not become healthy")
}
