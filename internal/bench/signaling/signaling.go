// Package signaling is the signaling load tool behind `parley bench
// signal`: it connects N WebSocket clients in rooms, measures join and
// relay latency, and reads the server's memory per connection from its
// /metrics. It only ever talks to the URL it is given (loopback in tests).
package signaling

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley/parley/internal/bench/proc"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// Options of one run.
type Options struct {
	URL string // server base URL, e.g. http://127.0.0.1:8080
	// Nodes are more servers, nodes of one cluster with URL: client i
	// dials the (i mod n)-th of URL and Nodes, so with two servers and
	// an even RoomSize every signal crosses from one node to the other.
	Nodes      []string
	Token      string        // the token every client joins with ("" on an open server)
	OpsURL     string        // the server's operations listener (/metrics), e.g. http://127.0.0.1:9090; "" = URL
	Clients    int           // how many (default 1000)
	RoomSize   int           // members per room (default 10)
	Dialers    int           // concurrent connection attempts (default 100)
	Interval   time.Duration // each client signals a room-mate this often (default 1 s)
	Duration   time.Duration // relay phase length (default 10 s)
	Settle     time.Duration // idle wait before reading memory (default 2 s)
	Progress   io.Writer     // progress lines, may be nil
	ServerPIDs []int         // server processes (a cluster's nodes), their CPU summed over the relay phase; none = not measured
	// PerAddress spreads the clients over loopback source addresses
	// (127.1.0.0/16), this many per address, so a server's per-address
	// limits (--conns-per-ip, --rooms-per-ip) stay switched on and are
	// not what stops the load; and each address has its own ephemeral
	// ports, which one address runs out of near 28,000 connections. 0 dials
	// every client from the default address.
	PerAddress int
}

// Result of one run; JSON for machines, Table for people.
type Result struct {
	Clients         int     `json:"clients"`
	RoomSize        int     `json:"room_size"`
	Connected       int     `json:"connected"`
	JoinP50ms       float64 `json:"join_p50_ms"`
	JoinP99ms       float64 `json:"join_p99_ms"`
	Relayed         int     `json:"relayed"`
	Lost            int     `json:"lost"`
	RelayP50ms      float64 `json:"relay_p50_ms"`
	RelayP99ms      float64 `json:"relay_p99_ms"`
	RelayRate       float64 `json:"relay_msgs_per_s"`
	HeapPerConnKiB  float64 `json:"server_heap_per_conn_kib"`
	StackPerConnKiB float64 `json:"server_stack_per_conn_kib"`
	GoroutinesPer   float64 `json:"server_goroutines_per_conn"`
	ServerCores     float64 `json:"server_cores"`          // during the relay phase
	ServerUsPerMsg  float64 `json:"server_cpu_us_per_msg"` // server CPU per relayed message
	ToolCores       float64 `json:"tool_cores"`
	HostBusyCores   float64 `json:"host_busy_cores"` // all processes: shows how shared the machine was
	// On a cluster (Nodes), what the first node's NATS connection
	// carried: messages (in + out) and their bytes per second while the
	// rooms were idle (settling), per room, and per relayed message.
	NATSIdleMsgsPerRoomS  float64 `json:"nats_idle_msgs_per_room_s,omitempty"`
	NATSIdleBytesPerRoomS float64 `json:"nats_idle_bytes_per_room_s,omitempty"`
	NATSMsgsPerRelayed    float64 `json:"nats_msgs_per_relayed,omitempty"`
	NATSBytesPerRelayed   float64 `json:"nats_bytes_per_relayed,omitempty"`
}

// NATSTraffic sums a node's NATS counters (in + out): messages, bytes.
func NATSTraffic(m map[string]float64) (msgs, bytes float64) {
	return m["parley_cluster_nats_in_messages_total"] + m["parley_cluster_nats_out_messages_total"],
		m["parley_cluster_nats_in_bytes_total"] + m["parley_cluster_nats_out_bytes_total"]
}

func (o *Options) fill() {
	if o.OpsURL == "" {
		o.OpsURL = o.URL
	}
	if o.Clients <= 0 {
		o.Clients = 1000
	}
	if o.RoomSize <= 0 {
		o.RoomSize = 10
	}
	if o.Dialers <= 0 {
		o.Dialers = 100
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Sources hands out one HTTP client per loopback source address, so a
// load tool's clients spread over many addresses and the server's
// per-address limits stay on.
type Sources struct {
	per     int
	mu      sync.Mutex
	clients map[int]*http.Client
}

// NewSources gives per clients each loopback source address.
func NewSources(per int) *Sources { return &Sources{per: per, clients: map[int]*http.Client{}} }

// Of is the HTTP client for client i: nil (the default address) when not
// spreading, else one bound to 127.1.x.y for i/per = x*256+y.
func (s *Sources) Of(i int) *http.Client {
	if s.per <= 0 {
		return nil
	}
	a := i / s.per
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[a]; c != nil {
		return c
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 1, byte(a>>8), byte(a))}, Timeout: 30 * time.Second}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	s.clients[a] = c
	return c
}

type member struct {
	c  *client.Client
	id string
}

// Run performs one bounded run: connect, settle, relay for Duration, close.
func Run(ctx context.Context, o Options) (Result, error) {
	o.fill()
	res := Result{Clients: o.Clients, RoomSize: o.RoomSize}
	base, err := Scrape(ctx, o.OpsURL)
	if err != nil {
		return res, err
	}
	sources := NewSources(o.PerAddress)
	urls := append([]string{o.URL}, o.Nodes...)
	members := make([]member, o.Clients)
	joinLat := make([]time.Duration, o.Clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.Dialers)
	var firstErr error
	var errMu sync.Mutex
	for i := range members {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := client.Dial(dctx, urls[i%len(urls)], &client.Options{Buffer: 256, HTTPClient: sources.Of(i)})
			if err == nil {
				var j *protocol.Message
				j, err = c.Join(dctx, fmt.Sprintf("bench-%d", i/o.RoomSize), fmt.Sprint("c", i), o.Token)
				if err == nil {
					members[i] = member{c: c, id: j.ID}
					joinLat[i] = time.Since(start)
					return
				}
				c.Close()
			}
			errMu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			errMu.Unlock()
		}(i)
		if i%1000 == 999 {
			fmt.Fprintf(o.Progress, "connected %d/%d\n", i+1, o.Clients)
		}
	}
	wg.Wait()
	defer closeAll(members)
	var lat []time.Duration
	for i, m := range members {
		if m.c != nil {
			lat = append(lat, joinLat[i])
		}
	}
	res.Connected = len(lat)
	if res.Connected < o.Clients {
		return res, fmt.Errorf("only %d of %d clients joined; first error: %v", res.Connected, o.Clients, firstErr)
	}
	res.JoinP50ms, res.JoinP99ms = pct(lat, 50), pct(lat, 99)
	// Drain the peer-joined bursts, then read the idle server's memory.
	stopDrain := make(chan struct{})
	var drainWG sync.WaitGroup
	recorder := &latencies{}
	for _, m := range members {
		drainWG.Add(1)
		go func(c *client.Client) {
			defer drainWG.Done()
			receive(c, recorder, stopDrain)
		}(m.c)
	}
	fmt.Fprintf(o.Progress, "all %d joined; settling %v\n", o.Clients, o.Settle)
	settled, err := Scrape(ctx, o.OpsURL)
	if err != nil {
		return res, err
	}
	settleStart := time.Now()
	time.Sleep(o.Settle)
	idle, err := Scrape(ctx, o.OpsURL)
	if err != nil {
		return res, err
	}
	rooms := float64((o.Clients + o.RoomSize - 1) / o.RoomSize)
	if len(o.Nodes) > 0 {
		m0, b0 := NATSTraffic(settled)
		m1, b1 := NATSTraffic(idle)
		secs := time.Since(settleStart).Seconds()
		res.NATSIdleMsgsPerRoomS, res.NATSIdleBytesPerRoomS = (m1-m0)/secs/rooms, (b1-b0)/secs/rooms
	}
	n := float64(o.Clients)
	res.HeapPerConnKiB = (idle["go_memstats_heap_inuse_bytes"] - base["go_memstats_heap_inuse_bytes"]) / n / 1024
	res.StackPerConnKiB = (idle["go_memstats_stack_inuse_bytes"] - base["go_memstats_stack_inuse_bytes"]) / n / 1024
	res.GoroutinesPer = (idle["go_goroutines"] - base["go_goroutines"]) / n
	srv0, _ := proc.ProcessesCPU(o.ServerPIDs)
	tool0, host0, t0 := proc.SelfCPU(), proc.HostBusySeconds(), time.Now()
	sent := relay(ctx, o, members)
	if wall := time.Since(t0).Seconds(); wall > 0 {
		srv1, err := proc.ProcessesCPU(o.ServerPIDs)
		if len(o.ServerPIDs) > 0 && err == nil {
			res.ServerCores = (srv1 - srv0) / wall
			if sent > 0 {
				res.ServerUsPerMsg = (srv1 - srv0) / float64(sent) * 1e6
			}
		}
		res.ToolCores = (proc.SelfCPU() - tool0) / wall
		res.HostBusyCores = (proc.HostBusySeconds() - host0) / wall
	}
	time.Sleep(500 * time.Millisecond) // let the last messages land
	if after, err := Scrape(ctx, o.OpsURL); err == nil && len(o.Nodes) > 0 && sent > 0 {
		m0, b0 := NATSTraffic(idle)
		m1, b1 := NATSTraffic(after)
		res.NATSMsgsPerRelayed, res.NATSBytesPerRelayed = (m1-m0)/float64(sent), (b1-b0)/float64(sent)
	}
	close(stopDrain)
	closeAll(members)
	drainWG.Wait()
	got := recorder.all()
	res.Relayed, res.Lost = len(got), sent-len(got)
	res.RelayP50ms, res.RelayP99ms = pct(got, 50), pct(got, 99)
	res.RelayRate = float64(sent) / o.Duration.Seconds()
	return res, nil
}

// relay makes every client signal the next member of its room every
// Interval for Duration, staggered so the load is even. It returns how
// many signals were sent.
func relay(ctx context.Context, o Options, members []member) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := 0
	deadline := time.Now().Add(o.Duration)
	fmt.Fprintf(o.Progress, "relaying for %v at %.0f msg/s\n", o.Duration, float64(len(members))/o.Interval.Seconds())
	for i, m := range members {
		room := i / o.RoomSize
		next := room*o.RoomSize + (i+1)%o.RoomSize
		if next >= len(members) || next == i {
			continue
		}
		to := members[next].id
		wg.Add(1)
		go func(c *client.Client, offset time.Duration) {
			defer wg.Done()
			time.Sleep(offset)
			t := time.NewTicker(o.Interval)
			defer t.Stop()
			n := 0
			for time.Now().Before(deadline) && ctx.Err() == nil {
				b := []byte(`{"type":"signal","to":"` + to + `","data":{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}}`)
				if c.SendRaw(ctx, b) == nil {
					n++
				}
				<-t.C
			}
			mu.Lock()
			sent += n
			mu.Unlock()
		}(m.c, time.Duration(i)*o.Interval/time.Duration(len(members)))
	}
	wg.Wait()
	return sent
}

func receive(c *client.Client, rec *latencies, stop <-chan struct{}) {
	for {
		select {
		case m, ok := <-c.Events():
			if !ok {
				return
			}
			if m.Type != protocol.TypeSignal {
				continue
			}
			var d struct{ T int64 }
			if json.Unmarshal(m.Data, &d) == nil && d.T > 0 {
				rec.add(time.Since(time.Unix(0, d.T)))
			}
		case <-stop:
			return
		}
	}
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }
func (l *latencies) all() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.d...)
}

func closeAll(ms []member) {
	var wg sync.WaitGroup
	for i := range ms {
		if ms[i].c == nil {
			continue
		}
		wg.Add(1)
		go func(c *client.Client) { defer wg.Done(); c.Close() }(ms[i].c)
		ms[i].c = nil
	}
	wg.Wait()
}

func pct(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return float64(s[i].Microseconds()) / 1000
}

// Scrape reads the unlabelled samples of the server's /metrics.
func Scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read server metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read server metrics from %s/metrics: %s (the server serves them on its --ops listener: pass its URL as OpsURL, -ops-url)", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

// Table formats the result for people.
func (r Result) Table() string {
	return fmt.Sprintf(`clients            %d in rooms of %d (%d connected)
join latency       p50 %.2f ms   p99 %.2f ms
relay latency      p50 %.2f ms   p99 %.2f ms   (%d relayed, %d lost, %.0f msg/s)
server per conn    heap %.1f KiB   stack %.1f KiB   goroutines %.2f
relay phase CPU    server %.2f cores (%.1f µs per message)   tool %.2f cores   whole machine %.2f cores busy
NATS (first node)  idle %.2f msg/s and %.0f B/s per room; relaying %.2f messages and %.0f B per relayed message
`, r.Clients, r.RoomSize, r.Connected, r.JoinP50ms, r.JoinP99ms, r.RelayP50ms, r.RelayP99ms, r.Relayed, r.Lost, r.RelayRate,
		r.HeapPerConnKiB, r.StackPerConnKiB, r.GoroutinesPer, r.ServerCores, r.ServerUsPerMsg, r.ToolCores, r.HostBusyCores,
		r.NATSIdleMsgsPerRoomS, r.NATSIdleBytesPerRoomS, r.NATSMsgsPerRelayed, r.NATSBytesPerRelayed)
}
