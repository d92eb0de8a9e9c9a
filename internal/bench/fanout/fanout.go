// Package fanout is the SFU load tool: one WHIP publisher sends VP8 video
// (synthetic frames at a set bitrate, or an IVF file) and Opus to a
// Parley server (or, with Source rtmp, an RTMP publisher sends H.264 that
// ffmpeg encoded and Opus over enhanced RTMP), N WHEP viewers receive
// it, and after a warm-up the tool measures, over a fixed window,
// per-viewer packet loss (sequence gaps after NACK recovery), forwarding
// latency (send time stamped per packet, matched on arrival by payload
// hash), time from a viewer's POST to its first video packet, and server
// CPU and memory per viewer (from /proc/<pid>).
//
// Viewers send the RTCP feedback a browser sends (pion's default
// interceptors: NACKs, receiver reports, transport-wide congestion
// control), unless BareViewers asks for NACKs alone.
//
// With Stalled, a share of the viewers connect over ICE-TCP through a
// proxy of the tool that stops reading from the server when the window
// starts (a viewer whose client stopped reading): their figures and the
// healthy viewers' are reported apart, with the server's sink drops
// (parley_sfu_sink_drops_total) before and after the window.
//
// Everything runs on loopback. With no URL the tool starts an in-process
// server (internal/server as `parley serve` wires it, see benchsrv), in
// which case server and tool share one process and the CPU figures are
// the sum of both.
package fanout

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/bench/benchsrv"
	"github.com/parley/parley/internal/bench/measure"
	"github.com/parley/parley/internal/bench/proc"
	"github.com/parley/parley/internal/sfu"
)

// Options configure a run.
type Options struct {
	// URL is the server's base URL (http://127.0.0.1:port), serving
	// /whip/{stream} and /whep/{stream}; "" starts an in-process server.
	URL string
	// OpsURL is the server's operations listener, where /metrics is read;
	// "" means URL (a server of before --ops).
	OpsURL string
	// PublishURL is where the WHIP publisher publishes when it is not URL:
	// a cluster's origin node, the viewers watching on URL, an edge.
	PublishURL string
	// Token is the bearer token of the publisher's and the viewers'
	// requests (a server with auth on); "" sends none.
	Token string
	// Stream is the stream name; "" means "bench".
	Stream string
	// Source is how the stream is published: SourceWHIP ("" too: VP8 +
	// Opus from pion) or SourceRTMP (H.264 + Opus from a gortmplib client
	// to the server's RTMP listener, RTMPURL). With rtmp the video is a
	// 10 s testsrc2 clip that ffmpeg's libx264 encodes at the start
	// (640x360, 30 fps, VideoBitrate, keyframe every second, no
	// B-frames), every 10th frame followed by a 9-byte SEI NAL unit carrying
	// its index, by which viewers time the frame's arrival (its last RTP
	// packet); the audio is the WHIP publisher's Opus frames, which
	// Parley passes through unchanged, matched by payload hash.
	Source string
	// RTMPURL is the server's RTMP listener (rtmp://127.0.0.1:1935; the
	// tool publishes to RTMPURL/live/Stream); an in-process server gets
	// one on a free loopback port.
	RTMPURL string
	// RTMPAudio is the rtmp source's audio: AudioOpus ("" too) or
	// AudioAAC, a 440 Hz tone that ffmpeg encodes at the start, which the
	// server transcodes to Opus with an ffmpeg child (a cost of its own;
	// its audio latency is not measured, the payloads change).
	RTMPAudio string
	// Viewers is the number of WHEP viewers; 0 means 10.
	Viewers int
	// Warmup runs after the last viewer joined, before measuring; 0 means 3 s.
	Warmup time.Duration
	// Duration is the measurement window; 0 means 10 s.
	Duration time.Duration
	// ServerPID is the process sampled for server CPU and RSS; 0 means this
	// process when the server is in-process (and no sampling otherwise).
	ServerPID int
	// External means someone else publishes the stream (a browser on
	// /b/<stream>, OBS): only viewers are started, and forwarding latency
	// is not measured.
	External bool
	// AudioOnly publishes and watches Opus alone, as a light show does.
	AudioOnly bool
	// Video is an IVF file of VP8 frames, looped at 30 fps; nil sends
	// synthetic VP8 frames (synth.VP8: valid frame headers, a keyframe
	// every 2 s) at VideoBitrate.
	Video []byte
	// VideoBitrate is the synthetic (or, with rtmp, the H.264) video's
	// bitrate; 0 means 1 Mbit/s.
	VideoBitrate int
	// BareViewers gives viewers a NACK generator only, no receiver
	// reports or TWCC feedback: less work for the server than browsers
	// make (the tool's behaviour before viewers had pion's defaults).
	BareViewers bool
	// Stalled is the percentage (0-100) of viewers that connect over
	// ICE-TCP only, through a loopback proxy that stops reading from the
	// server at the start of the measurement window. The server needs
	// ICE-TCP on loopback (an in-process server gets it: benchsrv.ConfigFor).
	Stalled int
	// JoinConcurrency bounds simultaneous viewer joins; 0 means 16.
	JoinConcurrency int
	// Progress receives a progress line every 2 s; nil is silent.
	Progress io.Writer
	// CPUProfile, if set, receives a CPU profile of the server over the
	// measurement window (pprof format): taken in-process, or fetched from
	// ProfileURL (the server's /debug/pprof/profile) for a separate server.
	CPUProfile io.Writer
	ProfileURL string
	// StatsURL is a separate server's /debug/sfu/stats, for the server-side
	// fan-out time; in-process servers are asked directly.
	StatsURL string
	// HeapProfile, if set, receives the server's heap profile at the end of
	// the window (in-process, or from ProfileURL's /debug/pprof/heap).
	HeapProfile io.Writer
	Logger      *slog.Logger

	// waitDrops (tests) starts the window's clock only once the server
	// counted a sink drop after the stall.
	waitDrops bool
}

// StalledCount is how many of the viewers Stalled makes stalled: the
// percentage rounded, at least one when Stalled > 0.
func (o Options) StalledCount() int {
	if o.Stalled <= 0 {
		return 0
	}
	return min(max((o.Viewers*o.Stalled+50)/100, 1), o.Viewers)
}

// Group is the loss and latency of a set of viewers over the window.
type Group struct {
	Viewers     int     `json:"viewers"`
	Connected   int     `json:"connected"`
	Expected    int64   `json:"expected_packets"` // by sequence-number advance
	Received    int64   `json:"received_packets"`
	Lost        int64   `json:"lost_packets"`
	LossPct     float64 `json:"loss_pct"`
	WorstLossPc float64 `json:"worst_viewer_loss_pct"`
	// ReceivedPct is received / (packets the publisher sent in the window
	// × viewers): what a viewer that gets nothing any more still shows
	// (its sequence numbers do not advance, so it has no gaps).
	ReceivedPct float64 `json:"received_of_published_pct"`
	LatencyP50  float64 `json:"latency_p50_ms"`
	LatencyP95  float64 `json:"latency_p95_ms"`
	LatencyP99  float64 `json:"latency_p99_ms"`
	LatencyMax  float64 `json:"latency_max_ms"`
}

// Result is what a run measured. Durations are in milliseconds.
type Result struct {
	Date         string  `json:"date"`
	CPUs         int     `json:"cpus"`
	InProcess    bool    `json:"in_process"`
	Source       string  `json:"source"` // whip, rtmp or external
	Media        string  `json:"media"`  // what was published
	Viewers      int     `json:"viewers"`
	Connected    int     `json:"connected"`     // viewers that received video
	JoinFailures int     `json:"join_failures"` // viewers whose POST or connection failed
	Window       float64 `json:"window_s"`

	// Over all viewers (healthy and stalled).

	Expected    int64   `json:"expected_packets"` // audio+video packets viewers should have received in the window
	Received    int64   `json:"received_packets"`
	Lost        int64   `json:"lost_packets"`
	LossPct     float64 `json:"loss_pct"`
	WorstLossPc float64 `json:"worst_viewer_loss_pct"`

	LatencyP50 float64 `json:"latency_p50_ms"`
	LatencyP95 float64 `json:"latency_p95_ms"`
	LatencyP99 float64 `json:"latency_p99_ms"`
	LatencyMax float64 `json:"latency_max_ms"`

	// Each kind apart (video with rtmp: per frame, to its last packet),
	// and how many viewers received it in the window.
	VideoLatencyP50 float64 `json:"video_latency_p50_ms"`
	VideoLatencyP99 float64 `json:"video_latency_p99_ms"`
	AudioLatencyP50 float64 `json:"audio_latency_p50_ms"`
	AudioLatencyP99 float64 `json:"audio_latency_p99_ms"`
	VideoViewers    int     `json:"viewers_receiving_video"`
	AudioViewers    int     `json:"viewers_receiving_audio"`

	FirstPacketP50 float64 `json:"first_packet_p50_ms"`
	FirstPacketP95 float64 `json:"first_packet_p95_ms"`
	FirstPacketMax float64 `json:"first_packet_max_ms"`

	ServerCPU      float64 `json:"server_cpu_s"` // CPU seconds in the window
	ServerCores    float64 `json:"server_cores"` // CPU seconds per second
	CoresPerViewer float64 `json:"server_cores_per_viewer"`
	// USPerPacket is the server's CPU time per packet the viewers
	// received: per-viewer CPU normalized for sources whose packet rates
	// differ (the rtmp source's video has one more, small, packet a frame).
	USPerPacket float64 `json:"server_us_per_received_packet"`
	// ChildCores is the CPU per second of the server's child processes
	// alive in the window (ffmpeg transcoders: per stream, not per
	// viewer; not in ServerCores).
	ChildCores     float64 `json:"server_children_cores,omitempty"`
	ServerRSSMB    float64 `json:"server_rss_mb"`
	BaseRSSMB      float64 `json:"server_base_rss_mb"` // with the publisher only
	RSSPerViewerMB float64 `json:"server_rss_per_viewer_mb"`

	ToolCPU   float64 `json:"tool_cpu_s"`
	ToolCores float64 `json:"tool_cores"`

	PublisherPackets int64 `json:"publisher_packets"` // sent in the window

	// Server-side time from reading a published packet to having written it
	// to every viewer (log2 buckets: upper bounds), and NACKs it answered.
	ServerFanOutP50 float64 `json:"server_fanout_p50_ms,omitempty"`
	ServerFanOutP99 float64 `json:"server_fanout_p99_ms,omitempty"`
	ServerNACKs     uint64  `json:"server_nacks_answered,omitempty"`

	// The server's parley_sfu_sink_drops_total (packets dropped because a
	// subscriber fell behind) before and after the window, from /metrics.
	SinkDropsBefore uint64 `json:"server_sink_drops_before"`
	SinkDropsAfter  uint64 `json:"server_sink_drops_after"`
	SinkDrops       uint64 `json:"server_sink_drops_window"`
	SinkDropsError  string `json:"server_sink_drops_error,omitempty"`
	// FirstDropAfter is the time from the stall to the first sink drop
	// the server counted (polled every 250 ms; 0: none in the window).
	FirstDropAfter float64 `json:"stall_to_first_sink_drop_s,omitempty"`

	// With Stalled: how many viewers were stalled, and each group apart.
	StalledViewers int    `json:"stalled_viewers,omitempty"`
	HealthyGroup   *Group `json:"healthy,omitempty"`
	StalledGroup   *Group `json:"stalled,omitempty"`
}

// Table renders the result for people.
func (r Result) Table() string {
	var b strings.Builder
	w := func(k, f string, a ...any) { fmt.Fprintf(&b, "%-28s "+f+"\n", append([]any{k}, a...)...) }
	mode := "separate process"
	if r.InProcess {
		mode = "in-process (server and tool share one process; CPU/RSS are their sum)"
	}
	w("server", "%s", mode)
	w("source", "%s: %s", r.Source, r.Media)
	w("viewers connected", "%d / %d (join failures %d)", r.Connected, r.Viewers, r.JoinFailures)
	w("window", "%.1f s", r.Window)
	all := ""
	if r.StalledGroup != nil {
		all = " (all)"
	}
	w("packet loss"+all, "%.3f %% (%d of %d; worst viewer %.3f %%)", r.LossPct, r.Lost, r.Expected, r.WorstLossPc)
	w("forwarding latency"+all, "p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms", r.LatencyP50, r.LatencyP95, r.LatencyP99, r.LatencyMax)
	w("  video / audio", "p50 %.2f / %.2f ms  p99 %.2f / %.2f ms (receiving: %d / %d viewers)",
		r.VideoLatencyP50, r.AudioLatencyP50, r.VideoLatencyP99, r.AudioLatencyP99, r.VideoViewers, r.AudioViewers)
	for _, g := range []struct {
		name string
		g    *Group
	}{{"healthy", r.HealthyGroup}, {"stalled", r.StalledGroup}} {
		if g.g == nil {
			continue
		}
		w(g.name+" viewers", "%d (%d received video)", g.g.Viewers, g.g.Connected)
		if g.g.Expected == 0 {
			w("  packet loss", "n/a (sequence numbers did not advance: nothing received)")
		} else {
			w("  packet loss", "%.3f %% (%d of %d; worst viewer %.3f %%)", g.g.LossPct, g.g.Lost, g.g.Expected, g.g.WorstLossPc)
		}
		w("  received of published", "%.1f %% (%d packets)", g.g.ReceivedPct, g.g.Received)
		w("  forwarding latency", "p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms", g.g.LatencyP50, g.g.LatencyP95, g.g.LatencyP99, g.g.LatencyMax)
	}
	if r.SinkDropsError != "" {
		w("server sink drops", "unknown (%s)", r.SinkDropsError)
	} else {
		w("server sink drops", "%d in the window (counter %d before, %d after)", r.SinkDrops, r.SinkDropsBefore, r.SinkDropsAfter)
		if r.StalledGroup != nil {
			if r.FirstDropAfter > 0 {
				w("  first drop after stall", "%.2f s", r.FirstDropAfter)
			} else {
				w("  first drop after stall", "none in the window (the server's TCP send buffers still held the stalled viewers' packets)")
			}
		}
	}
	w("POST to first packet", "p50 %.0f ms  p95 %.0f ms  max %.0f ms", r.FirstPacketP50, r.FirstPacketP95, r.FirstPacketMax)
	if r.Window > 0 {
		w("published", "%d packets in the window (%.0f/s)", r.PublisherPackets, float64(r.PublisherPackets)/r.Window)
	}
	w("server CPU", "%.2f cores = %.5f cores/viewer = %.2f µs per received packet", r.ServerCores, r.CoresPerViewer, r.USPerPacket)
	if r.ChildCores > 0 {
		w("server's child processes", "%.3f cores (ffmpeg transcoders: per stream, not in the figure above)", r.ChildCores)
	}
	w("server RSS", "%.1f MB (base %.1f MB) = %.3f MB/viewer", r.ServerRSSMB, r.BaseRSSMB, r.RSSPerViewerMB)
	if r.ServerFanOutP99 > 0 {
		w("server fan-out per packet", "p50 <= %.3f ms  p99 <= %.3f ms (read to last viewer written)", r.ServerFanOutP50, r.ServerFanOutP99)
	}
	w("tool CPU", "%.2f cores", r.ToolCores)
	return b.String()
}

func (o *Options) defaults() {
	if o.Stream == "" {
		o.Stream = "bench"
	}
	if o.Source == "" {
		o.Source = SourceWHIP
	}
	if o.RTMPAudio == "" {
		o.RTMPAudio = AudioOpus
	}
	if o.Viewers <= 0 {
		o.Viewers = 10
	}
	if o.Warmup <= 0 {
		o.Warmup = 3 * time.Second
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.JoinConcurrency <= 0 {
		o.JoinConcurrency = 16
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// describe names the source and what it publishes, for the report.
func (o Options) describe() (source, media string) {
	if o.External {
		return "external", "someone else's publisher"
	}
	video, audio, over := "VP8", "Opus", "WebRTC"
	if o.Source == SourceRTMP {
		video = fmt.Sprintf("H.264 (libx264, %dx%d, %d fps, %d kbit/s, keyframe every second)", clipWidth, clipHeight, clipFPS, cmp.Or(o.VideoBitrate, 1_000_000)/1000)
		over = "enhanced RTMP"
		if o.RTMPAudio == AudioAAC {
			audio, over = "AAC (the server transcodes it to Opus; no audio latency)", "RTMP"
		}
	}
	if o.AudioOnly {
		return o.Source, audio + " only, over " + over
	}
	return o.Source, video + " + " + audio + " over " + over
}

// Run performs one measurement.
func Run(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	res := Result{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Viewers: o.Viewers}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if o.Stalled < 0 || o.Stalled > 100 {
		return res, fmt.Errorf("fanout: stalled %d %%: want 0-100", o.Stalled)
	}
	rtmpSource := o.Source == SourceRTMP
	switch {
	case o.Source != SourceWHIP && !rtmpSource:
		return res, fmt.Errorf("fanout: source %q: want %s or %s", o.Source, SourceWHIP, SourceRTMP)
	case rtmpSource && o.External:
		return res, errors.New("fanout: an external publisher and the rtmp source exclude each other")
	case o.RTMPAudio != AudioOpus && o.RTMPAudio != AudioAAC:
		return res, fmt.Errorf("fanout: rtmp audio %q: want %s or %s", o.RTMPAudio, AudioOpus, AudioAAC)
	case o.RTMPAudio == AudioAAC && !rtmpSource:
		return res, errors.New("fanout: AAC audio is for the rtmp source")
	case rtmpSource && o.Video != nil:
		return res, errors.New("fanout: an IVF video is VP8 for the whip source; the rtmp source encodes its own H.264")
	}
	res.Source, res.Media = o.describe()
	nStalled := o.StalledCount()
	res.StalledViewers = nStalled
	stats := func() (sfu.Stats, error) { return fetchStats(ctx, o.StatsURL) }
	if o.URL == "" {
		cfg := benchsrv.ConfigFor(nStalled > 0)
		if rtmpSource {
			cfg = benchsrv.WithRTMP(cfg)
		}
		srv, err := benchsrv.StartConfig(ctx, cfg, o.Logger)
		if err != nil {
			return res, err
		}
		defer srv.Close()
		o.URL, o.OpsURL = srv.URL(), srv.OpsURL()
		if rtmpSource {
			o.RTMPURL = "rtmp://" + srv.RTMPAddr().String()
		}
		stats = func() (sfu.Stats, error) { return srv.SFU().Stats(), nil }
		res.InProcess = true
		if o.ServerPID == 0 {
			o.ServerPID = os.Getpid()
		}
	}
	if o.OpsURL == "" {
		o.OpsURL = o.URL
	}
	if !benchsrv.LoopbackURL(o.URL) || !benchsrv.LoopbackURL(o.OpsURL) || (o.PublishURL != "" && !benchsrv.LoopbackURL(o.PublishURL)) {
		return res, fmt.Errorf("fanout: refusing non-loopback URL %q (ops %q, publish %q)", o.URL, o.OpsURL, o.PublishURL)
	}
	if rtmpSource && o.RTMPURL == "" {
		return res, errNoRTMP
	}
	if rtmpSource && (!benchsrv.LoopbackURL(o.RTMPURL) || !strings.HasPrefix(o.RTMPURL, "rtmp://")) {
		return res, fmt.Errorf("fanout: refusing RTMP URL %q: want rtmp:// on loopback", o.RTMPURL)
	}
	var (
		frames frameSource
		clip   h264Clip
		audio  = opusAudio()
		err    error
	)
	if rtmpSource && o.RTMPAudio == AudioAAC {
		progress(o.Progress, "encoding %d s of AAC with ffmpeg", clipSeconds)
		if audio, err = aacAudio(ctx); err != nil {
			return res, err
		}
	}
	if rtmpSource {
		if !o.AudioOnly {
			progress(o.Progress, "encoding %d s of H.264 with ffmpeg", clipSeconds)
			if clip, err = encodeH264(ctx, o.VideoBitrate); err != nil {
				return res, err
			}
		}
	} else if frames, err = videoSource(o.Video, o.VideoBitrate); err != nil {
		return res, err
	}
	epoch := time.Now()
	h264Fmtp := ""
	if clip.sps != nil {
		h264Fmtp = clip.fmtp()
	}
	pubAPI, viewAPI, tcpAPI, err := clientAPIs(o.BareViewers, h264Fmtp)
	if err != nil {
		return res, err
	}
	hc := &http.Client{Timeout: 20 * time.Second}

	pub := &publisher{} // External: no publisher of ours, no latency stamps
	if !o.External {
		if rtmpSource {
			pub, err = startRTMPPublisher(ctx, o.RTMPURL, o.Stream, clip, audio, epoch, o.AudioOnly)
		} else {
			pub, err = startPublisher(ctx, pubAPI, hc, cmp.Or(o.PublishURL, o.URL), o.Token, o.Stream, frames, epoch, o.AudioOnly)
		}
		if err != nil {
			return res, err
		}
		defer pub.close()
		progress(o.Progress, "publisher up; waiting for the stream to go live")
		if rtmpSource {
			// The server learns an RTMP publish's tracks from its first
			// packets (a second or two): wait until they are published.
			if err := waitLive(ctx, hc, o.URL, o.Stream, len(kindsFor(o.AudioOnly)), pub); err != nil {
				return res, err
			}
		} else if err := measure.Sleep(ctx, time.Second); err != nil {
			return res, err
		}
	}
	baseRSS, _ := proc.RSS(o.ServerPID)

	var stalls *stallGroup
	if nStalled > 0 {
		stalls = newStallGroup()
		// After the viewers' close (deferred below, so run before this).
		defer stalls.close()
	}
	viewers, failures := joinViewers(ctx, viewAPI, tcpAPI, hc, stalls, o, epoch, pub.rings)
	res.JoinFailures = failures
	defer func() {
		var wg sync.WaitGroup
		for _, v := range viewers {
			wg.Add(1)
			go func() { defer wg.Done(); v.close() }()
		}
		wg.Wait()
	}()
	if len(viewers) == 0 {
		return res, errors.New("fanout: no viewer could join")
	}
	progress(o.Progress, "%d viewers joined (%d stalled at the window's start; %d failed); warming up %s", len(viewers), nStalled, failures, o.Warmup)
	if err := watch(ctx, o.Progress, viewers, o.Warmup, "warm-up"); err != nil {
		return res, err
	}

	// Measurement window.
	drops0, drops0Err := sinkDrops(ctx, hc, o.OpsURL)
	firstDrop := func() float64 { return 0 }
	if stalls != nil {
		// The stalled group is compared with the healthy one: stall it only
		// once every viewer has received media (a loaded machine may take
		// longer than the warm-up to get the TCP viewers going).
		if err := waitFirstPackets(ctx, viewers); err != nil {
			return res, err
		}
		stalls.stall()
		progress(o.Progress, "stalled %d viewers' proxies (server sink drops so far: %d)", nStalled, drops0)
		firstDrop = watchFirstDrop(ctx, hc, o.OpsURL, drops0, o.Progress)
		if o.waitDrops {
			if err := waitSinkDrops(ctx, hc, o.OpsURL, drops0); err != nil {
				return res, err
			}
		}
	}
	srv0, _ := proc.ProcessesCPU([]int{o.ServerPID})
	kids0, _ := proc.ChildrenCPU(o.ServerPID)
	tool0 := proc.SelfCPU()
	snap0 := snapshotAll(viewers)
	st0, st0Err := stats()
	pub0 := pub.sent.Load()
	for _, v := range viewers {
		v.measuring.Store(true)
	}
	var profErr chan error
	if o.CPUProfile != nil {
		profErr = startProfile(ctx, o, hc)
	}
	t0 := time.Now()
	if err := watch(ctx, o.Progress, viewers, o.Duration, "measuring"); err != nil {
		return res, err
	}
	window := time.Since(t0).Seconds()
	if err := pub.failed(); err != nil {
		return res, err
	}
	for _, v := range viewers {
		v.measuring.Store(false)
	}
	snap1 := snapshotAll(viewers)
	drops1, drops1Err := sinkDrops(ctx, hc, o.OpsURL)
	res.FirstDropAfter = firstDrop()
	st1, st1Err := stats()
	srv1, srvErr := proc.ProcessesCPU([]int{o.ServerPID})
	kids1, _ := proc.ChildrenCPU(o.ServerPID)
	tool1 := proc.SelfCPU()
	rss, _ := proc.RSS(o.ServerPID)
	if profErr != nil {
		if err := <-profErr; err != nil {
			o.Logger.Warn("cpu profile", "err", err)
		}
	}

	if o.HeapProfile != nil {
		if err := heapProfile(ctx, o, hc); err != nil {
			o.Logger.Warn("heap profile", "err", err)
		}
	}
	res.Window = window
	res.PublisherPackets = pub.sent.Load() - pub0
	var joins []float64
	var all, healthy, stalled []int
	for i, v := range viewers {
		if v.firstAt.Load() > 0 {
			joins = append(joins, float64(v.firstAt.Load()-v.postAt)/1e6)
		}
		all = append(all, i)
		if v.stalled {
			stalled = append(stalled, i)
		} else {
			healthy = append(healthy, i)
		}
	}
	g := measureGroup(viewers, all, snap0, snap1, res.PublisherPackets)
	res.Connected, res.Expected, res.Received, res.Lost = g.Connected, g.Expected, g.Received, g.Lost
	res.LossPct, res.WorstLossPc = g.LossPct, g.WorstLossPc
	res.LatencyP50, res.LatencyP95, res.LatencyP99, res.LatencyMax = g.LatencyP50, g.LatencyP95, g.LatencyP99, g.LatencyMax
	res.JoinFailures += len(viewers) - res.Connected
	var vlat, alat []float64
	for i, v := range viewers {
		vlat, alat = append(vlat, v.latencies(0)...), append(alat, v.latencies(1)...)
		if snap0[i].received(snap1[i], 0) {
			res.VideoViewers++
		}
		if snap0[i].received(snap1[i], 1) {
			res.AudioViewers++
		}
	}
	slices.Sort(vlat)
	slices.Sort(alat)
	res.VideoLatencyP50, res.VideoLatencyP99 = measure.Percentile(vlat, 50), measure.Percentile(vlat, 99)
	res.AudioLatencyP50, res.AudioLatencyP99 = measure.Percentile(alat, 50), measure.Percentile(alat, 99)
	if stalls != nil {
		h, st := measureGroup(viewers, healthy, snap0, snap1, res.PublisherPackets), measureGroup(viewers, stalled, snap0, snap1, res.PublisherPackets)
		res.HealthyGroup, res.StalledGroup = &h, &st
	}
	switch {
	case drops0Err != nil:
		res.SinkDropsError = drops0Err.Error()
	case drops1Err != nil:
		res.SinkDropsError = drops1Err.Error()
	default:
		res.SinkDropsBefore, res.SinkDropsAfter = drops0, drops1
		res.SinkDrops = drops1 - drops0
	}
	slices.Sort(joins)
	res.FirstPacketP50, res.FirstPacketP95 = measure.Percentile(joins, 50), measure.Percentile(joins, 95)
	if len(joins) > 0 {
		res.FirstPacketMax = joins[len(joins)-1]
	}
	if srvErr == nil && o.ServerPID != 0 {
		res.ServerCPU = srv1 - srv0
		res.ServerCores = res.ServerCPU / window
		res.CoresPerViewer = res.ServerCores / float64(len(viewers))
		for pid, c := range kids1 {
			res.ChildCores += (c - kids0[pid]) / window
		}
		if res.Received > 0 {
			res.USPerPacket = res.ServerCPU / float64(res.Received) * 1e6
		}
		res.ServerRSSMB = float64(rss) / (1 << 20)
		res.BaseRSSMB = float64(baseRSS) / (1 << 20)
		res.RSSPerViewerMB = (res.ServerRSSMB - res.BaseRSSMB) / float64(len(viewers))
	}
	if st0Err == nil && st1Err == nil && len(st0.FanOutHist) == len(st1.FanOutHist) {
		d := make([]uint64, len(st1.FanOutHist))
		for i := range d {
			d[i] = st1.FanOutHist[i] - st0.FanOutHist[i]
		}
		res.ServerFanOutP50 = sfu.FanOutQuantile(d, 0.5) / 1000
		res.ServerFanOutP99 = sfu.FanOutQuantile(d, 0.99) / 1000
		res.ServerNACKs = st1.NACKAnswered - st0.NACKAnswered
	}
	res.ToolCPU = tool1 - tool0
	res.ToolCores = res.ToolCPU / window
	return res, nil
}

// measureGroup is the loss and latency of viewers[idx] between two
// snapshots; published is what the publisher sent meanwhile.
func measureGroup(viewers []*viewer, idx []int, snap0, snap1 []snap, published int64) Group {
	g := Group{Viewers: len(idx)}
	var lats []float64
	for _, i := range idx {
		v := viewers[i]
		if v.firstAt.Load() > 0 {
			g.Connected++
		}
		exp := snap1[i].ext - snap0[i].ext
		got := snap1[i].recv - snap0[i].recv
		lost := max(exp-got, 0)
		g.Expected += exp
		g.Received += got
		g.Lost += lost
		if exp > 0 {
			g.WorstLossPc = math.Max(g.WorstLossPc, 100*float64(lost)/float64(exp))
		} else {
			g.WorstLossPc = 100
		}
		lats = append(lats, v.latencies(-1)...)
	}
	if g.Expected > 0 {
		g.LossPct = 100 * float64(g.Lost) / float64(g.Expected)
	}
	if published > 0 && len(idx) > 0 {
		g.ReceivedPct = 100 * float64(g.Received) / float64(published*int64(len(idx)))
	}
	slices.Sort(lats)
	g.LatencyP50, g.LatencyP95, g.LatencyP99 = measure.Percentile(lats, 50), measure.Percentile(lats, 95), measure.Percentile(lats, 99)
	if len(lats) > 0 {
		g.LatencyMax = lats[len(lats)-1]
	}
	return g
}

// waitLive polls the server's /api/streams/{stream} until the stream has
// the tracks the publisher sends (20 s at most).
func waitLive(ctx context.Context, hc *http.Client, base, stream string, tracks int, pub *publisher) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	var last string
	for {
		st, err := streamTracks(ctx, hc, base, stream)
		switch {
		case err != nil:
			last = err.Error()
		case st >= tracks:
			return nil
		default:
			last = fmt.Sprintf("%d of %d tracks published", st, tracks)
		}
		if err := pub.failed(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fanout: stream %s did not go live (%s): %w", stream, last, ctx.Err())
		case <-tk.C:
		}
	}
}

// streamTracks is how many tracks GET /api/streams/{stream} counts.
func streamTracks(ctx context.Context, hc *http.Client, base, stream string) (int, error) {
	body, err := get(ctx, hc, base+"/api/streams/"+stream, "stream status")
	if err != nil {
		return 0, err
	}
	defer body.Close()
	var st struct {
		Tracks int `json:"tracks"`
	}
	if err := json.NewDecoder(io.LimitReader(body, 1<<16)).Decode(&st); err != nil {
		return 0, fmt.Errorf("fanout: stream status: %w", err)
	}
	return st.Tracks, nil
}

// get GETs url and returns the body of a 200 answer; what names the
// request in errors.
func get(ctx context.Context, hc *http.Client, url, what string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fanout: %s: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("fanout: %s: %s", what, resp.Status)
	}
	return resp.Body, nil
}

// sinkDrops reads parley_sfu_sink_drops_total from the server's /metrics.
func sinkDrops(ctx context.Context, hc *http.Client, base string) (uint64, error) {
	body, err := get(ctx, hc, base+"/metrics", "metrics")
	if err != nil {
		return 0, err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "parley_sfu_sink_drops_total" {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0, fmt.Errorf("fanout: metrics: %q: %w", sc.Text(), err)
			}
			return uint64(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("fanout: metrics: %w", err)
	}
	return 0, errors.New("fanout: metrics: no parley_sfu_sink_drops_total")
}

// watchFirstDrop polls /metrics every 250 ms, from now, until the
// sink-drop counter passes from; the function it returns stops polling and
// gives the seconds that took (0: not yet).
func watchFirstDrop(ctx context.Context, hc *http.Client, base string, from uint64, w io.Writer) func() float64 {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var after atomic.Int64
	t0 := time.Now()
	go func() {
		defer close(done)
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			if n, err := sinkDrops(ctx, hc, base); err == nil && n > from {
				d := time.Since(t0)
				after.Store(int64(d))
				progress(w, "first sink drops %.2f s after the stall (%d)", d.Seconds(), n-from)
				return
			}
		}
	}()
	return func() float64 {
		cancel()
		<-done
		return time.Duration(after.Load()).Seconds()
	}
}

// waitFirstPackets waits until every viewer has received a packet.
func waitFirstPackets(ctx context.Context, viewers []*viewer) error {
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for {
		waiting := 0
		for _, v := range viewers {
			if v.firstAt.Load() == 0 {
				waiting++
			}
		}
		if waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fanout: %d of %d viewers received nothing before the stall: %w", waiting, len(viewers), ctx.Err())
		case <-tk.C:
		}
	}
}

// waitSinkDrops polls /metrics until the sink-drop counter passes from.
func waitSinkDrops(ctx context.Context, hc *http.Client, base string, from uint64) error {
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for {
		n, err := sinkDrops(ctx, hc, base)
		if err != nil {
			return err
		}
		if n > from {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fanout: the server counted no sink drop after the stall: %w", ctx.Err())
		case <-tk.C:
		}
	}
}

func startProfile(ctx context.Context, o Options, hc *http.Client) chan error {
	done := make(chan error, 1)
	if o.ProfileURL == "" {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			done <- err
			return done
		}
		go func() {
			_ = measure.Sleep(ctx, o.Duration)
			pprof.StopCPUProfile()
			done <- nil
		}()
		return done
	}
	go func() {
		secs := int(o.Duration.Seconds())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s?seconds=%d", o.ProfileURL, max(secs, 1)), nil)
		if err != nil {
			done <- err
			return
		}
		c := &http.Client{Timeout: o.Duration + 30*time.Second}
		resp, err := c.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		_, err = io.Copy(o.CPUProfile, resp.Body)
		done <- err
	}()
	return done
}

func fetchStats(ctx context.Context, url string) (sfu.Stats, error) {
	var st sfu.Stats
	if url == "" {
		return st, errors.New("fanout: no stats URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("fanout: stats: %w", err)
	}
	return st, nil
}

func heapProfile(ctx context.Context, o Options, hc *http.Client) error {
	if o.ProfileURL == "" {
		runtime.GC()
		return pprof.Lookup("heap").WriteTo(o.HeapProfile, 0)
	}
	url := strings.TrimSuffix(o.ProfileURL, "/profile") + "/heap?gc=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(o.HeapProfile, resp.Body)
	return err
}

func progress(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, "fanout: "+format+"\n", a...)
	}
}

// watch waits d, printing a progress line every 2 s.
func watch(ctx context.Context, w io.Writer, viewers []*viewer, d time.Duration, phase string) error {
	end := time.Now().Add(d)
	last := snapshotAll(viewers)
	lastT := time.Now()
	for time.Now().Before(end) {
		if err := measure.Sleep(ctx, min(2*time.Second, time.Until(end))); err != nil {
			return err
		}
		cur := snapshotAll(viewers)
		var recv, exp int64
		for i := range cur {
			recv += cur[i].recv - last[i].recv
			exp += cur[i].ext - last[i].ext
		}
		el := time.Since(lastT).Seconds()
		loss := 0.0
		if exp > 0 {
			loss = 100 * float64(max(exp-recv, 0)) / float64(exp)
		}
		progress(w, "%s: %d viewers, %.0f pkt/s received, loss %.3f %%", phase, len(viewers), float64(recv)/el, loss)
		last, lastT = cur, time.Now()
	}
	return nil
}

type snap struct {
	ext, recv int64
	kinds     [2]int64 // packets received per kind (video, audio)
}

func snapshotAll(vs []*viewer) []snap {
	out := make([]snap, len(vs))
	for i, v := range vs {
		out[i] = v.snapshot()
	}
	return out
}

// joinViewers opens o.Viewers WHEP sessions, o.JoinConcurrency at a time.
// Stalled viewers (Options.StalledCount, spread evenly over the joins) use
// tcpAPI and reach the server through stalls.
func joinViewers(ctx context.Context, api, tcpAPI apiT, hc *http.Client, stalls *stallGroup, o Options, epoch time.Time, rings [2]*stampRing) ([]*viewer, int) {
	var (
		mu       sync.Mutex
		viewers  []*viewer
		failures atomic.Int32
		wg       sync.WaitGroup
		sem      = make(chan struct{}, o.JoinConcurrency)
		k, n     = o.StalledCount(), o.Viewers
		tcpHC    *http.Client
	)
	if stalls != nil {
		tcpHC = &http.Client{Timeout: hc.Timeout, Transport: answerRewriter{base: http.DefaultTransport, g: stalls}}
	}
	for i := 0; i < o.Viewers; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return viewers, int(failures.Load())
		case sem <- struct{}{}:
		}
		wg.Add(1)
		stalled := stalls != nil && (i+1)*k/n > i*k/n
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a, c := api, hc
			if stalled {
				a, c = tcpAPI, tcpHC
			}
			v, err := startViewer(ctx, a, c, o.URL, o.Token, o.Stream, epoch, rings, o.AudioOnly, o.Source == SourceRTMP)
			if err != nil {
				failures.Add(1)
				o.Logger.Warn("viewer failed", "err", err)
				return
			}
			v.stalled = stalled
			mu.Lock()
			viewers = append(viewers, v)
			n := len(viewers)
			mu.Unlock()
			if n%50 == 0 {
				progress(o.Progress, "%d viewers joined", n)
			}
		}()
	}
	wg.Wait()
	return viewers, int(failures.Load())
}
