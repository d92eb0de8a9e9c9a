// Package hlsload is the LL-HLS load tool (`parley bench hls`): one
// stream published over RTMP (an H.264 clip ffmpeg encodes once, then
// loops without re-encoding), N clients on loopback that each follow the
// stream as an LL-HLS player does: a blocking playlist request for the
// next part, then that part. It reports the server's CPU and how late each
// client got each part past the part's availability.
//
// A part's availability is the earliest moment any client had a
// playlist listing it (every client waits on the same blocking request,
// so the first answer is when the server made the part); a client's
// lateness for a part is when it had the part's last byte minus that.
package hlsload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley/parley/internal/bench/measure"
	"github.com/parley/parley/internal/bench/proc"
)

// Options of a run.
type Options struct {
	URL       string // server base URL (loopback), serving /hls/
	RTMPURL   string // rtmp://127.0.0.1:PORT the clip is published to; empty: the stream is published by someone else
	Stream    string
	Clients   int
	Warmup    time.Duration // after every client got its first part
	Duration  time.Duration // measurement window
	ServerPID int           // sampled for CPU; 0: the server runs in this process (CPU is then the sum)
	// PerAddress clients share one loopback source address (127.1.x.y),
	// so the server's per-address limits stay on.
	PerAddress int
	Progress   io.Writer
	Verbose    bool // every failed request to Progress
}

func (o *Options) fill() {
	if o.Stream == "" {
		o.Stream = "bench"
	}
	if o.Clients <= 0 {
		o.Clients = 1000
	}
	if o.Warmup <= 0 {
		o.Warmup = 3 * time.Second
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.PerAddress <= 0 {
		o.PerAddress = 10
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Result of a run.
type Result struct {
	Clients      int     `json:"clients"`
	Following    int     `json:"following"` // clients that got parts in the window
	Window       float64 `json:"window_s"`
	Parts        int     `json:"parts"`          // distinct parts made in the window
	PartMs       float64 `json:"part_ms"`        // their mean duration (availability to availability)
	Fetches      int     `json:"fetches"`        // (client, part) deliveries in the window
	Missed       int     `json:"missed"`         // (client, part) pairs a client never got
	Errors       int     `json:"errors"`         // failed requests
	LateP50      float64 `json:"late_p50_ms"`    // lateness past availability
	LateP99      float64 `json:"late_p99_ms"`    //
	LateMax      float64 `json:"late_max_ms"`    //
	LateOverPart int     `json:"late_over_part"` // deliveries later than one part duration
	ServerCores  float64 `json:"server_cores"`
	ToolCores    float64 `json:"tool_cores"`
	HostCores    float64 `json:"host_cores"` // all CPUs' busy time: other work on the machine shows here
	InProcess    bool    `json:"in_process"`
}

// Table is the result for people.
func (r Result) Table() string {
	var b strings.Builder
	w := func(k, f string, a ...any) { fmt.Fprintf(&b, "%-26s "+f+"\n", append([]any{k}, a...)...) }
	w("clients following", "%d / %d", r.Following, r.Clients)
	w("window", "%.1f s, %d parts of %.0f ms", r.Window, r.Parts, r.PartMs)
	w("deliveries", "%d (missed %d, errors %d)", r.Fetches, r.Missed, r.Errors)
	w("late past availability", "p50 %.1f ms  p99 %.1f ms  max %.1f ms", r.LateP50, r.LateP99, r.LateMax)
	w("later than one part", "%d deliveries", r.LateOverPart)
	cores := "%.3f cores"
	if r.InProcess {
		cores += " (in-process: server and tool together)"
	}
	w("server CPU", cores, r.ServerCores)
	w("tool CPU", "%.3f cores", r.ToolCores)
	w("host CPU (all work)", "%.3f cores", r.HostCores)
	return b.String()
}

// Run performs one bounded run.
func Run(ctx context.Context, o Options) (Result, error) {
	o.fill()
	res := Result{Clients: o.Clients, InProcess: o.ServerPID == 0}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.RTMPURL != "" {
		stop, err := publish(ctx, o.RTMPURL+"/live/"+o.Stream)
		if err != nil {
			return res, err
		}
		defer stop()
	}
	avail := &availability{at: map[string]time.Time{}}
	clients := make([]*player, o.Clients)
	for i := range clients {
		clients[i] = &player{base: o.URL + "/hls/" + o.Stream + "/", http: httpClient(i / o.PerAddress), avail: avail}
		if o.Verbose {
			clients[i].log = o.Progress
		}
	}
	fmt.Fprintf(o.Progress, "hls: %d clients following %s\n", o.Clients, o.URL+"/hls/"+o.Stream+"/index.m3u8")
	var wg sync.WaitGroup
	for _, p := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx)
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	// Warm-up: every client has a part (or 30 s passed), then Warmup.
	deadline := time.Now().Add(30 * time.Second)
	for started(clients) < o.Clients && time.Now().Before(deadline) {
		if err := measure.Sleep(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	fmt.Fprintf(o.Progress, "hls: %d clients following; warming up %v\n", started(clients), o.Warmup)
	if err := measure.Sleep(ctx, o.Warmup); err != nil {
		return res, err
	}
	cpu0, self0, host0, t0 := serverCPU(o.ServerPID), proc.SelfCPU(), proc.HostBusySeconds(), time.Now()
	for _, p := range clients {
		p.mark(t0)
	}
	if err := measure.Sleep(ctx, o.Duration); err != nil {
		return res, err
	}
	t1 := time.Now()
	cpu1, self1, host1 := serverCPU(o.ServerPID), proc.SelfCPU(), proc.HostBusySeconds()
	win := t1.Sub(t0).Seconds()
	res.Window = win
	res.ServerCores = (cpu1 - cpu0) / win
	res.ToolCores = (self1 - self0) / win
	if o.ServerPID == 0 {
		res.ToolCores = 0 // the same process: reported as the server's
	}
	res.HostCores = (host1 - host0) / win
	res.summarize(clients, avail, t0, t1)
	if res.Fetches == 0 {
		return res, ErrNoParts
	}
	return res, nil
}

func serverCPU(pid int) float64 {
	if pid == 0 {
		return proc.SelfCPU()
	}
	c, err := proc.ReadCPU(pid)
	if err != nil {
		return 0
	}
	return c.Total()
}

func started(ps []*player) int {
	n := 0
	for _, p := range ps {
		if p.started() {
			n++
		}
	}
	return n
}

// summarize computes the window's figures: parts that became available
// in [t0, t1 - 1 s] (the last second's may still be on their way).
func (r *Result) summarize(ps []*player, avail *availability, t0, t1 time.Time) {
	avail.mu.Lock()
	var parts []string
	var times []time.Time
	for uri, at := range avail.at {
		if !at.Before(t0) && at.Before(t1.Add(-time.Second)) {
			parts = append(parts, uri)
			times = append(times, at)
		}
	}
	avail.mu.Unlock()
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	r.Parts = len(parts)
	if len(times) > 1 {
		r.PartMs = float64(times[len(times)-1].Sub(times[0]).Milliseconds()) / float64(len(times)-1)
	}
	var late []float64
	for _, p := range ps {
		got, errs := p.snapshot()
		r.Errors += errs
		n := 0
		for _, uri := range parts {
			at, ok := got[uri]
			if !ok {
				r.Missed++
				continue
			}
			n++
			late = append(late, float64(at.Sub(avail.of(uri)).Microseconds())/1000)
		}
		if n > 0 {
			r.Following++
		}
	}
	slices.Sort(late)
	r.Fetches = len(late)
	if len(late) > 0 {
		r.LateP50, r.LateP99, r.LateMax = measure.Percentile(late, 50), measure.Percentile(late, 99), late[len(late)-1]
		for _, l := range late {
			if l > r.PartMs {
				r.LateOverPart++
			}
		}
	}
}

// availability is when each part was first listed to any client.
type availability struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (a *availability) listed(uri string, t time.Time) {
	a.mu.Lock()
	if old, ok := a.at[uri]; !ok || t.Before(old) {
		a.at[uri] = t
	}
	a.mu.Unlock()
}

func (a *availability) of(uri string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at[uri]
}

// httpClient is a client of its own connections from loopback source
// address 127.1.x.y (a = x*256+y).
func httpClient(a int) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 1, byte(a>>8), byte(a))}, Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 2}, Timeout: 30 * time.Second}
}

// player follows the stream's video playlist as an LL-HLS player: a
// blocking request for the part after the newest it has, then that part.
type player struct {
	base  string
	http  *http.Client
	avail *availability
	log   io.Writer // failed requests, with Options.Verbose

	mu    sync.Mutex
	from  time.Time            // the window's start (zero: not yet)
	got   map[string]time.Time // part URI → when its last byte came, in the window
	first bool
	errs  int
}

func (p *player) started() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}

func (p *player) mark(t time.Time) {
	p.mu.Lock()
	p.from, p.got, p.errs = t, map[string]time.Time{}, 0
	p.mu.Unlock()
}

func (p *player) snapshot() (map[string]time.Time, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.got), p.errs
}

func (p *player) fail(err error) {
	if p.log != nil {
		fmt.Fprintln(p.log, "hls client:", err)
	}
	p.mu.Lock()
	p.errs++
	p.mu.Unlock()
}

func (p *player) run(ctx context.Context) {
	media := ""
	for ctx.Err() == nil && media == "" {
		body, err := p.get(ctx, "index.m3u8")
		if err != nil {
			p.fail(err)
			_ = measure.Sleep(ctx, 500*time.Millisecond)
			continue
		}
		for _, l := range strings.Split(body, "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				media, _, _ = strings.Cut(l, "?")
				break
			}
		}
	}
	q := ""
	for ctx.Err() == nil {
		body, err := p.get(ctx, media+q)
		if err != nil {
			p.fail(err)
			q = "" // start again from the live edge
			_ = measure.Sleep(ctx, 200*time.Millisecond)
			continue
		}
		listed := time.Now()
		last, ok := newestPart(body)
		if !ok {
			p.fail(errors.New("no part in the playlist"))
			q = ""
			continue
		}
		p.avail.listed(last.uri, listed)
		if _, err := p.get(ctx, last.uri); err != nil {
			p.fail(err)
		} else {
			done := time.Now()
			p.mu.Lock()
			p.first = true
			if p.got != nil && !listed.Before(p.from) {
				p.got[last.uri] = done
			}
			p.mu.Unlock()
		}
		// The next part, as hls.js asks for it: part 0 of the next segment
		// after a finished segment's last part.
		next := partRef{msn: last.msn, part: last.part + 1}
		if last.final {
			next = partRef{msn: last.msn + 1}
		}
		q = "?_HLS_msn=" + strconv.Itoa(next.msn) + "&_HLS_part=" + strconv.Itoa(next.part)
	}
}

func (p *player) get(ctx context.Context, file string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+file, nil)
	if err != nil {
		return "", err
	}
	res, err := p.http.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", file, res.Status)
	}
	return string(b), nil
}

// partRef is a part of a media playlist: its segment's media sequence
// number, its index in the segment, its URI.
type partRef struct {
	msn, part int
	uri       string
	final     bool // the last part of a finished segment
}

// newestPart finds the last EXT-X-PART of a media playlist and where it
// stands.
func newestPart(pl string) (partRef, bool) {
	seq, segs, parts := -1, 0, 0
	var last partRef
	found := false
	for _, l := range strings.Split(pl, "\n") {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			seq, _ = strconv.Atoi(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"))
		case strings.HasPrefix(l, "#EXTINF:"):
			segs++
			parts = 0
		case strings.HasPrefix(l, "#EXT-X-PART:"):
			_, uri, ok := strings.Cut(l, `URI="`)
			uri, _, ok2 := strings.Cut(uri, `"`)
			if !ok || !ok2 {
				continue
			}
			// Parts before an EXTINF belong to that segment (segs), the
			// trailing ones to the segment being made.
			last, found = partRef{msn: seq + segs, part: parts, uri: uri}, true
			parts++
		}
	}
	last.final = last.msn < seq+segs
	return last, found && seq >= 0
}

// publish loops a clip of H.264 over RTMP: ffmpeg encodes 2 s of
// testsrc2 (640x360, 30 fps, a keyframe a second) once, then a second
// ffmpeg sends it in real time without re-encoding, so the run's CPU is
// the server's, not an encoder's. Video only: the muxer's work per part
// is the same with audio, which adds a second playlist a player polls.
func publish(ctx context.Context, url string) (stop func(), err error) {
	dir, err := os.MkdirTemp("", "parley-hlsload-")
	if err != nil {
		return nil, err
	}
	clip := filepath.Join(dir, "clip.flv")
	var stderr bytes.Buffer
	enc := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
		"-i", "testsrc2=size=640x360:rate=30", "-frames:v", "60", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
		"-bf", "0", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-b:v", "1M", "-f", "flv", clip)
	enc.Stderr = &stderr
	if err := enc.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("hlsload: encoding the clip with ffmpeg (libx264): %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	pctx, cancel := context.WithCancel(ctx)
	send := exec.CommandContext(pctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
		"-i", clip, "-c", "copy", "-f", "flv", url)
	if err := send.Start(); err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("hlsload: ffmpeg publisher: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- send.Wait() }()
	return func() {
		cancel()
		<-done
		os.RemoveAll(dir)
	}, nil
}

// ErrNoParts: no client got a part.
var ErrNoParts = errors.New("hlsload: no client got a part")
