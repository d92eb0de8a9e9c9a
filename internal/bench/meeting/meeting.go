// Package meeting is the group-call load tool (`parley bench meeting`): N
// participants join one sfu-mode room through Parley's real signaling
// (pkg/client and `media` messages), each publishes Opus and synthetic
// VP8 and receives everyone else, as browsers in a meeting do (pion's
// default interceptors: NACKs, RTCP reports, TWCC feedback). After a
// warm-up it measures, over a fixed window, packets sent, received and
// lost per subscription (RTP sequence gaps after NACK recovery),
// forwarding latency (each packet carries its send time; all clients
// share one clock) and the server's CPU and memory (from /proc/<pid>).
//
// Everything runs on loopback. With no URL the tool starts an in-process
// server (see benchsrv), in which case server and tool share one process
// and the CPU figures are their sum.
package meeting

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parley/parley/internal/bench/benchsrv"
	"github.com/parley/parley/internal/bench/measure"
	"github.com/parley/parley/internal/bench/proc"
	"github.com/parley/parley/internal/bench/signaling"
)

// Options configure a run.
type Options struct {
	// URL is the server's base URL (http://127.0.0.1:port); "" starts an
	// in-process server.
	URL string
	// Room is the room name; "" means "bench-meeting".
	Room string
	// Participants is the number of members; 0 means 10.
	Participants int
	// Warmup runs after the last participant receives everyone, before
	// measuring; 0 means 3 s.
	Warmup time.Duration
	// Duration is the measurement window; 0 means 10 s.
	Duration time.Duration
	// VideoBitrate is each participant's synthetic VP8 bitrate; 0 means
	// 500 kbit/s.
	VideoBitrate int
	// ServerPIDs are the server processes sampled for CPU and RSS (summed
	// over a cluster's nodes); none means this process when the server
	// is in-process, no sampling otherwise.
	ServerPIDs []int
	// Nodes are more servers, nodes of one cluster with URL: participant
	// i joins the (i mod n)-th of URL and Nodes, so the room spans the
	// nodes and its media crosses them (the cluster's relay). OpsURL is
	// then the first node's operations listener, where its NATS traffic
	// is read, and Token the join token the nodes' shared secret signs.
	Nodes  []string
	OpsURL string
	Token  string
	// Progress receives progress lines; nil is silent.
	Progress io.Writer
	Logger   *slog.Logger
}

// Result is what a run measured. Durations are in milliseconds.
type Result struct {
	Date          string  `json:"date"`
	CPUs          int     `json:"cpus"`
	InProcess     bool    `json:"in_process"`
	Participants  int     `json:"participants"`
	Subscriptions int     `json:"subscriptions"`          // tracks received, audio and video
	Expected      int     `json:"expected_subscriptions"` // N*(N-1)*2
	Window        float64 `json:"window_s"`

	Sent        int64   `json:"sent_packets"`     // by all publishers in the window
	ExpectedRx  int64   `json:"expected_packets"` // per subscription sequence span, summed
	Received    int64   `json:"received_packets"`
	Lost        int64   `json:"lost_packets"`
	LossPct     float64 `json:"loss_pct"`
	WorstSubPct float64 `json:"worst_subscription_loss_pct"`
	Silent      int     `json:"silent_subscriptions"` // received nothing in the window

	LatencyP50 float64 `json:"latency_p50_ms"`
	LatencyP95 float64 `json:"latency_p95_ms"`
	LatencyP99 float64 `json:"latency_p99_ms"`
	LatencyMax float64 `json:"latency_max_ms"`

	ServerCPU         float64 `json:"server_cpu_s"`
	ServerCores       float64 `json:"server_cores"`
	CoresPerSub       float64 `json:"server_cores_per_subscription"`
	ServerRSSMB       float64 `json:"server_rss_mb"`
	ToolCPU           float64 `json:"tool_cpu_s"`
	ToolCores         float64 `json:"tool_cores"`
	JoinToAllTracksMs float64 `json:"join_to_all_tracks_ms"` // first join to every subscription flowing

	// On a cluster (Nodes): the servers, and the first node's NATS
	// traffic in the window (in + out), per second.
	Nodes         int     `json:"nodes,omitempty"`
	NATSMsgsPerS  float64 `json:"nats_msgs_per_s,omitempty"`
	NATSBytesPerS float64 `json:"nats_bytes_per_s,omitempty"`
}

// Table renders the result for people.
func (r Result) Table() string {
	var b strings.Builder
	w := func(k, f string, a ...any) { fmt.Fprintf(&b, "%-28s "+f+"\n", append([]any{k}, a...)...) }
	mode := "separate process"
	if r.InProcess {
		mode = "in-process (server and tool share one process; CPU/RSS are their sum)"
	}
	if r.Nodes > 1 {
		mode = fmt.Sprintf("%d nodes of one cluster, separate processes (CPU and RSS summed)", r.Nodes)
	}
	w("server", "%s", mode)
	w("participants", "%d, %d / %d subscriptions (audio+video)", r.Participants, r.Subscriptions, r.Expected)
	w("window", "%.1f s", r.Window)
	w("packets", "sent %d, received %d", r.Sent, r.Received)
	w("packet loss", "%.3f %% (%d of %d; worst subscription %.3f %%; silent %d)", r.LossPct, r.Lost, r.ExpectedRx, r.WorstSubPct, r.Silent)
	w("forwarding latency", "p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms", r.LatencyP50, r.LatencyP95, r.LatencyP99, r.LatencyMax)
	w("server CPU", "%.2f cores = %.5f cores/subscription", r.ServerCores, r.CoresPerSub)
	w("server RSS", "%.1f MB", r.ServerRSSMB)
	w("tool CPU", "%.2f cores", r.ToolCores)
	if r.Nodes > 1 {
		w("NATS (first node)", "%.0f messages/s, %.0f B/s for the room (in + out)", r.NATSMsgsPerS, r.NATSBytesPerS)
	}
	return b.String()
}

func (o *Options) defaults() {
	if o.Room == "" {
		o.Room = "bench-meeting"
	}
	if o.Participants <= 0 {
		o.Participants = 10
	}
	if o.Warmup <= 0 {
		o.Warmup = 3 * time.Second
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.VideoBitrate <= 0 {
		o.VideoBitrate = 500_000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// nodeURL is the server participant i joins.
func (o *Options) nodeURL(i int) string {
	if i%(len(o.Nodes)+1) == 0 {
		return o.URL
	}
	return o.Nodes[i%(len(o.Nodes)+1)-1]
}

// Run performs one measurement.
func Run(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	n := o.Participants
	res := Result{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Participants: n, Expected: n * (n - 1) * 2}
	if n < 2 {
		return res, errors.New("meeting: needs at least 2 participants")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.URL == "" {
		srv, err := benchsrv.Start(ctx, o.Logger)
		if err != nil {
			return res, err
		}
		defer srv.Close()
		o.URL = srv.URL()
		res.InProcess = true
		if len(o.ServerPIDs) == 0 {
			o.ServerPIDs = []int{os.Getpid()}
		}
	}
	for _, u := range append([]string{o.URL, o.OpsURL}, o.Nodes...) {
		if u != "" && !benchsrv.LoopbackURL(u) {
			return res, fmt.Errorf("meeting: refusing non-loopback URL %q", u)
		}
	}
	res.Nodes = len(o.Nodes) + 1
	api, err := newAPI()
	if err != nil {
		return res, err
	}
	epoch := time.Now()
	var parts []*participant
	defer func() {
		var wg sync.WaitGroup
		for _, p := range parts {
			wg.Add(1)
			go func() { defer wg.Done(); p.close() }()
		}
		wg.Wait()
	}()
	for i := range n {
		p, err := join(ctx, api, o, i, epoch)
		if err != nil {
			return res, fmt.Errorf("meeting: participant %d: %w", i, err)
		}
		parts = append(parts, p)
		progress(o.Progress, "participant %d joined", i)
	}
	// Wait until every subscription flows (or the warm-up's worth of time
	// past a generous bound).
	allDeadline := time.Now().Add(30 * time.Second)
	for {
		got := 0
		for _, p := range parts {
			got += p.flowing()
		}
		if got == res.Expected {
			res.JoinToAllTracksMs = float64(time.Since(epoch)) / 1e6
			break
		}
		if time.Now().After(allDeadline) {
			progress(o.Progress, "only %d of %d subscriptions flow; measuring anyway", got, res.Expected)
			break
		}
		if err := measure.Sleep(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	progress(o.Progress, "%d participants in; warming up %s", n, o.Warmup)
	if err := measure.Sleep(ctx, o.Warmup); err != nil {
		return res, err
	}

	srv0, _ := proc.ProcessesCPU(o.ServerPIDs)
	natsMsgs0, natsBytes0, _ := natsTraffic(ctx, o)
	tool0 := proc.SelfCPU()
	sent0 := sentAll(parts)
	snap0 := snapAll(parts)
	for _, p := range parts {
		p.measuring.Store(true)
	}
	t0 := time.Now()
	progress(o.Progress, "measuring %s", o.Duration)
	if err := measure.Sleep(ctx, o.Duration); err != nil {
		return res, err
	}
	window := time.Since(t0).Seconds()
	for _, p := range parts {
		p.measuring.Store(false)
	}
	snap1 := snapAll(parts)
	sent1 := sentAll(parts)
	srv1, srvErr := proc.ProcessesCPU(o.ServerPIDs)
	natsMsgs1, natsBytes1, natsErr := natsTraffic(ctx, o)
	tool1 := proc.SelfCPU()
	var rss int64
	for _, pid := range o.ServerPIDs {
		r, _ := proc.RSS(pid)
		rss += r
	}

	res.Window = window
	res.Sent = sent1 - sent0
	var lats []float64
	for k, s1 := range snap1 {
		s0 := snap0[k]
		res.Subscriptions++
		exp, got := s1.ext-s0.ext, s1.recv-s0.recv
		if got == 0 {
			res.Silent++
		}
		lost := max(exp-got, 0)
		res.ExpectedRx += exp
		res.Received += got
		res.Lost += lost
		if exp > 0 {
			res.WorstSubPct = math.Max(res.WorstSubPct, 100*float64(lost)/float64(exp))
		}
	}
	res.Silent += res.Expected - res.Subscriptions
	for _, p := range parts {
		lats = append(lats, p.latencies()...)
	}
	if res.ExpectedRx > 0 {
		res.LossPct = 100 * float64(res.Lost) / float64(res.ExpectedRx)
	}
	slices.Sort(lats)
	res.LatencyP50, res.LatencyP95, res.LatencyP99 = measure.Percentile(lats, 50), measure.Percentile(lats, 95), measure.Percentile(lats, 99)
	if len(lats) > 0 {
		res.LatencyMax = lats[len(lats)-1]
	}
	if len(o.Nodes) > 0 && natsErr == nil {
		res.NATSMsgsPerS, res.NATSBytesPerS = (natsMsgs1-natsMsgs0)/window, (natsBytes1-natsBytes0)/window
	}
	if srvErr == nil && len(o.ServerPIDs) > 0 {
		res.ServerCPU = srv1 - srv0
		res.ServerCores = res.ServerCPU / window
		if res.Subscriptions > 0 {
			res.CoresPerSub = res.ServerCores / float64(res.Subscriptions)
		}
		res.ServerRSSMB = float64(rss) / (1 << 20)
	}
	res.ToolCPU = tool1 - tool0
	res.ToolCores = res.ToolCPU / window
	return res, nil
}

func sentAll(ps []*participant) int64 {
	var n int64
	for _, p := range ps {
		n += p.sent.Load()
	}
	return n
}

// subKey names one subscription: who receives, whose track, which kind.
type subKey struct{ sub, pub, kind int }

func snapAll(ps []*participant) map[subKey]snap {
	out := map[subKey]snap{}
	for _, p := range ps {
		p.snapshot(out)
	}
	return out
}

func progress(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, "meeting: "+format+"\n", a...)
	}
}

// natsTraffic is the first node's NATS messages and bytes so far, in and
// out (a cluster's run only).
func natsTraffic(ctx context.Context, o Options) (msgs, bytes float64, err error) {
	if len(o.Nodes) == 0 || o.OpsURL == "" {
		return 0, 0, errors.New("meeting: not a cluster")
	}
	m, err := signaling.Scrape(ctx, o.OpsURL)
	if err != nil {
		return 0, 0, err
	}
	msgs, bytes = signaling.NATSTraffic(m)
	return msgs, bytes, nil
}
