package hlsload

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/internal/bench/proc"
)

// BenchmarkServingFloor is what any Go HTTP server pays on this machine
// for the traffic of `parley bench hls`, measured without Parley,
// gohlslib or a muxer: a server in a child process (this test binary run
// again) answers N keep-alive clients that each, every part (200 ms),
// send a blocking playlist request that the server holds until the next
// part exists, then ask for that part. The answers are made once and
// written from the same bytes (a playlist of playlistSize bytes, a part
// of partSize: 1 Mbit/s × 200 ms), as Parley's shared answers and file
// cache do. Two servers:
//
//   - "nethttp": net/http with a handler that waits on the part's
//     broadcast and writes the prepared bytes with a Content-Length;
//   - "minimal": a goroutine per connection that reads a request with a
//     bufio.Reader, finds the path, and writes the status line, headers
//     and body in one write: the least a Go server can do per request.
//
// The metric is the server process's CPU (utime + stime from /proc, which
// on loopback includes delivering into the clients' sockets) per second
// and per request, with the clients (this process) taking the rest of the
// machine. Each client is its own TCP connection.
//
//	go test -run '^$' -bench ServingFloor -benchtime 50x ./internal/bench/hlsload
//
// -benchtime Nx is N parts (N/5 seconds); PARLEY_FLOOR_CLIENTS (default
// 1000) sets the clients.
func BenchmarkServingFloor(b *testing.B) {
	clients := 1000
	if v, err := strconv.Atoi(os.Getenv("PARLEY_FLOOR_CLIENTS")); err == nil && v > 0 {
		clients = v
	}
	if _, err := proc.RaiseFileLimit(uint64(2*clients + 256)); err != nil {
		b.Logf("file limit: %v", err)
	}
	for _, server := range []string{"minimal", "nethttp"} {
		b.Run(server, func(b *testing.B) { servingFloor(b, server, clients) })
	}
}

const (
	floorPart     = 200 * time.Millisecond
	playlistSize  = 2048
	partSize      = 25000
	floorChildEnv = "PARLEY_HLS_FLOOR_SERVER"
)

func servingFloor(b *testing.B, server string, clients int) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestServingFloorChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), floorChildEnv+"="+server)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("child: %v", err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "addr "))

	conns := make([]*floorClient, clients)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = &floorClient{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	}
	var wg sync.WaitGroup
	// Warm up: every client asks for part 0, held until the server's first
	// tick; then the window starts.
	var errs atomic.Int64
	run := func(from, to int) {
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := from; p < to; p++ {
					if err := c.part(p, i); err != nil {
						if errs.Add(1) == 1 {
							b.Errorf("client %d part %d: %v", i, p, err)
						}
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	run(0, 3)
	cpu0, err := proc.ReadCPU(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	b.ResetTimer()
	run(3, 3+b.N)
	b.StopTimer()
	wall := time.Since(t0).Seconds()
	cpu1, err := proc.ReadCPU(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	cpu := cpu1.Total() - cpu0.Total()
	requests := float64(2 * clients * b.N)
	b.ReportMetric(cpu/wall, "server-cores")
	b.ReportMetric(cpu/requests*1e6, "µs/request")
	b.ReportMetric(float64(b.N)/wall/(float64(time.Second)/float64(floorPart)), "parts-on-time")
}

// floorClient asks for each part as a low-latency player does: a
// blocking playlist request, then the part it lists.
type floorClient struct {
	c net.Conn
	r *bufio.Reader
}

func (c *floorClient) part(p, i int) error {
	req := fmt.Sprintf("GET /stream/index.m3u8?_HLS_msn=%d&_HLS_part=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: floor/%d\r\nAccept: */*\r\n\r\n", p, i)
	if _, err := io.WriteString(c.c, req); err != nil {
		return err
	}
	if err := c.answer(); err != nil {
		return err
	}
	req = fmt.Sprintf("GET /stream/part%d.mp4 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: floor/%d\r\nAccept: */*\r\n\r\n", p, i)
	if _, err := io.WriteString(c.c, req); err != nil {
		return err
	}
	return c.answer()
}

// answer reads one response and drops its body.
func (c *floorClient) answer() error {
	n := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(k), "Content-Length") {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return fmt.Errorf("no Content-Length")
	}
	_, err := c.r.Discard(n)
	return err
}

// TestServingFloorChild is the benchmark's server when run as its child.
func TestServingFloorChild(t *testing.T) {
	kind := os.Getenv(floorChildEnv)
	if kind == "" {
		return // not a child: nothing to test
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("addr %s\n", ln.Addr())
	_ = os.Stdout.Sync()

	// parts: a broadcast per part, closed when it exists (every 200 ms).
	var mu sync.Mutex
	made := -1
	waits := map[int]chan struct{}{}
	wait := func(p int) <-chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if p <= made {
			c := make(chan struct{})
			close(c)
			return c
		}
		c, ok := waits[p]
		if !ok {
			c = make(chan struct{})
			waits[p] = c
		}
		return c
	}
	go func() { // ends with the process
		for range time.Tick(floorPart) {
			mu.Lock()
			made++
			if c, ok := waits[made]; ok {
				close(c)
				delete(waits, made)
			}
			mu.Unlock()
		}
	}()
	playlist := bytes.Repeat([]byte("#EXT-X-PART:DURATION=0.2,URI=\"part.mp4\"\n"), playlistSize/41)
	part := bytes.Repeat([]byte{0x5a}, partSize)
	msn := func(q string) int {
		_, v, _ := strings.Cut(q, "_HLS_msn=")
		v, _, _ = strings.Cut(v, "&")
		n, _ := strconv.Atoi(v)
		return n
	}

	if kind == "nethttp" {
		plLen, partLen := strconv.Itoa(len(playlist)), strconv.Itoa(len(part))
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".m3u8") {
				<-wait(msn(r.URL.RawQuery))
				w.Header()["Content-Type"] = []string{"application/vnd.apple.mpegurl"}
				w.Header()["Content-Length"] = []string{plLen}
				_, _ = w.Write(playlist)
				return
			}
			w.Header()["Content-Type"] = []string{"video/mp4"}
			w.Header()["Content-Length"] = []string{partLen}
			_, _ = w.Write(part)
		})
		_ = (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
		return
	}
	answer := func(ct string, body []byte) []byte {
		return append([]byte("HTTP/1.1 200 OK\r\nContent-Type: "+ct+"\r\nContent-Length: "+strconv.Itoa(len(body))+
			"\r\nCache-Control: max-age=1\r\nDate: Sat, 28 Nov 2026 14:00:00 GMT\r\n\r\n"), body...)
	}
	plAnswer, partAnswer := answer("application/vnd.apple.mpegurl", playlist), answer("video/mp4", part)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { // ends when the client closes
			defer c.Close()
			r := bufio.NewReaderSize(c, 4096)
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				target := string(bytes.Fields(line)[1])
				for { // the headers
					h, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(h) <= 2 {
						break
					}
				}
				body := partAnswer
				if p, q, _ := strings.Cut(target, "?"); strings.HasSuffix(p, ".m3u8") {
					<-wait(msn(q))
					body = plAnswer
				}
				if _, err := c.Write(body); err != nil {
					return
				}
			}
		}()
	}
}
