// Package transcode turns one stream's AAC into Opus through a supervised
// ffmpeg child process (Debian's ffmpeg, libopus): no pure-Go Opus encoder
// or licence-clean AAC decoder exists, and running ffmpeg as a separate
// process keeps LGPL code out of the binary.
//
// AAC access units go in with Write, framed as ADTS on the child's stdin;
// Ogg/Opus comes out of its stdout, and each Opus packet is handed to
// Config.OnPacket with a 48 kHz timestamp. Write never blocks: a bounded
// queue drops when the child falls behind. The child dies with the
// context, and is restarted with backoff when it dies on its own. Without
// ffmpeg the status says so ("audio unavailable: ffmpeg not found").
package transcode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoFFmpeg is the status error when no ffmpeg binary is found.
var ErrNoFFmpeg = errors.New("audio unavailable: ffmpeg not found")

// Config configures an AAC to Opus transcoder.
type Config struct {
	// SampleRate and Channels describe the AAC input (AAC-LC).
	SampleRate int
	Channels   int
	// OnPacket gets each Opus packet and its 48 kHz timestamp, from the
	// transcoder's reader goroutine; pkt is only valid during the call.
	OnPacket func(pkt []byte, ts uint32)
	// FFmpeg is the binary; "" looks up "ffmpeg" on PATH.
	FFmpeg string
	// Bitrate of the Opus output in bit/s; 0 means 64000.
	Bitrate int
	// Queue bounds the AAC frames waiting for the child; 0 means 64.
	Queue  int
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the restart delay; 0 means 250 ms
	// and 10 s.
	MinBackoff, MaxBackoff time.Duration
}

// Status is what the transcoder is doing.
type Status struct {
	Running  bool
	Err      string // the last error in words ("" when none)
	Restarts uint64
	Dropped  uint64 // AAC frames dropped because the queue was full
	Packets  uint64 // Opus packets given out
	PID      int    // the current child's process ID, 0 when none
}

// maxFrame bounds one AAC access unit (an ADTS frame holds 13 bits of length).
const maxFrame = 8191 - adtsHeaderLen

// AACToOpus is one stream's transcoder.
type AACToOpus struct {
	*child
	cfg   Config
	srIdx int
}

// child is a supervised ffmpeg: frames queued by Write go to its stdin,
// read consumes its stdout; it is restarted with backoff when it dies.
type child struct {
	name       string   // "AAC to Opus", for logs
	args       []string // ffmpeg's arguments
	preamble   []byte   // written to stdin first at every start
	read       func(io.Reader) error
	minBackoff time.Duration
	maxBackoff time.Duration
	log        *slog.Logger
	free       chan *frame
	queue      chan *frame
	done       chan struct{}
	cancel     context.CancelFunc

	dropped, packets, restarts atomic.Uint64
	mu                         sync.Mutex
	err                        string
	pid                        int
}

type frame struct {
	n   int
	buf [adtsHeaderLen + maxFrame]byte
}

// Start checks the configuration and starts the supervisor; it runs until
// ctx ends or Close. A missing ffmpeg is not an error here: the status
// says so and Write drops.
func Start(ctx context.Context, cfg Config) (*AACToOpus, error) {
	idx, ok := sampleRateIndex(cfg.SampleRate)
	if !ok {
		return nil, fmt.Errorf("transcode: unsupported AAC sample rate %d", cfg.SampleRate)
	}
	if cfg.Channels < 1 || cfg.Channels > 7 {
		return nil, fmt.Errorf("transcode: unsupported AAC channel count %d", cfg.Channels)
	}
	if cfg.OnPacket == nil {
		return nil, errors.New("transcode: Config.OnPacket is required")
	}
	cfg.Bitrate = positiveOr(cfg.Bitrate, 64000)
	// Input probing off so the first Opus comes after a few frames, not
	// seconds; libopus at complexity 5 (of 10) costs about 0.012 core in
	// steady state against 0.0155 at 10 (60 s of 44.1 kHz stereo on the
	// test machine), inaudible at 64 kbit/s for speech and music streams.
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-probesize", "32", "-analyzeduration", "0", "-fflags", "nobuffer",
		"-f", "aac", "-i", "pipe:0",
		"-vn", "-c:a", "libopus", "-b:a", strconv.Itoa(cfg.Bitrate), "-ar", "48000",
		"-application", "lowdelay", "-frame_duration", "20", "-compression_level", "5",
		"-f", "ogg", "-page_duration", "20000", "-flush_packets", "1", "pipe:1"}
	t := &AACToOpus{cfg: cfg, srIdx: idx}
	var ts uint32 // continues across restarts
	t.child = newChild("AAC to Opus", args, nil, func(r io.Reader) error { return t.readOpus(r, &ts) },
		cfg.Queue, cfg.MinBackoff, cfg.MaxBackoff, cfg.Logger)
	t.start(ctx, cfg.FFmpeg)
	return t, nil
}

// newChild makes a supervisor; zero queue, backoffs and logger take
// their defaults (64 frames, 250 ms to 10 s, no logs).
func newChild(name string, args []string, preamble []byte, read func(io.Reader) error, queue int, minB, maxB time.Duration, log *slog.Logger) *child {
	queue = positiveOr(queue, 64)
	minB = positiveOr(minB, 250*time.Millisecond)
	maxB = positiveOr(maxB, 10*time.Second)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &child{name: name, args: args, preamble: preamble, read: read, minBackoff: minB, maxBackoff: maxB, log: log,
		free: make(chan *frame, queue), queue: make(chan *frame, queue), done: make(chan struct{})}
	for range queue {
		c.free <- new(frame)
	}
	return c
}

// start runs the supervisor, or, without ffmpeg, a drain that says so.
func (t *child) start(ctx context.Context, bin string) {
	ctx, t.cancel = context.WithCancel(ctx)
	if bin == "" {
		bin = "ffmpeg"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		t.setErr(ErrNoFFmpeg.Error())
		t.log.Error(t.name+" transcoding is off for this stream", "err", ErrNoFFmpeg)
		go t.drain(ctx)
		return
	}
	go t.supervise(ctx, path)
}

// positiveOr is v, or def when v is not positive.
func positiveOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Write queues one AAC access unit; it never blocks, and drops the frame
// when the queue is full or the unit is too large.
func (t *AACToOpus) Write(au []byte) {
	if len(au) == 0 || len(au) > maxFrame {
		t.dropped.Add(1)
		return
	}
	f := t.take()
	if f == nil {
		return
	}
	putADTSHeader(f.buf[:adtsHeaderLen], t.srIdx, t.cfg.Channels, len(au))
	f.n = adtsHeaderLen + copy(f.buf[adtsHeaderLen:], au)
	t.put(f)
}

// take gets a free frame, or counts a drop and gives nil.
func (t *child) take() *frame {
	select {
	case f := <-t.free:
		return f
	default:
		t.dropped.Add(1)
		return nil
	}
}

// put queues a filled frame.
func (t *child) put(f *frame) {
	select {
	case t.queue <- f:
	default: // cannot happen: queue and free hold the same frames
		t.free <- f
		t.dropped.Add(1)
	}
}

// Close stops the child and waits for the supervisor.
func (t *child) Close() {
	t.cancel()
	<-t.done
}

// Done is closed once the transcoder has stopped.
func (t *child) Done() <-chan struct{} { return t.done }

// Status reports the transcoder's state.
func (t *child) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Status{Running: t.pid != 0, Err: t.err, Restarts: t.restarts.Load(),
		Dropped: t.dropped.Load(), Packets: t.packets.Load(), PID: t.pid}
}

func (t *child) setErr(s string) {
	t.mu.Lock()
	t.err = s
	t.mu.Unlock()
}

func (t *child) setPID(pid int) {
	t.mu.Lock()
	t.pid = pid
	t.mu.Unlock()
}

// drain recycles queued frames while there is no child.
func (t *child) drain(ctx context.Context) {
	defer close(t.done)
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-t.queue:
			t.dropped.Add(1)
			t.free <- f
		}
	}
}

func (t *child) supervise(ctx context.Context, path string) {
	defer close(t.done)
	backoff := t.minBackoff
	for {
		started := time.Now()
		err := t.runChild(ctx, path)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 10*time.Second {
			backoff = t.minBackoff
		}
		t.setErr(fmt.Sprintf("ffmpeg exited: %v; restarting in %s", err, backoff))
		t.log.Warn(t.name+" transcoder died; restarting", "err", err, "backoff", backoff)
		t.restarts.Add(1)
		// Frames queued while no child runs are stale: drop them.
		timer := time.NewTimer(backoff)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case f := <-t.queue:
				t.dropped.Add(1)
				t.free <- f
			case <-timer.C:
				break wait
			}
		}
		backoff = min(2*backoff, t.maxBackoff)
	}
}

// runChild runs one ffmpeg until it exits or ctx ends.
func (t *child) runChild(ctx context.Context, path string) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, path, t.args...)
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("stdout pipe: %w", err)
	}
	stderr := &tailBuffer{max: 512}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting ffmpeg: %w", err)
	}
	t.setPID(cmd.Process.Pid)
	t.setErr("")
	defer t.setPID(0)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the writer: queue to stdin, ends with the child
		defer wg.Done()
		defer stdin.Close()
		if len(t.preamble) > 0 {
			if _, err := stdin.Write(t.preamble); err != nil {
				cancel()
				return
			}
		}
		for {
			select {
			case <-cctx.Done():
				return
			case f := <-t.queue:
				_, err := stdin.Write(f.buf[:f.n])
				t.free <- f
				if err != nil {
					cancel()
					return
				}
			}
		}
	}()
	rerr := t.read(stdout)
	cancel()
	wg.Wait()
	werr := cmd.Wait()
	if msg := stderr.String(); msg != "" {
		return fmt.Errorf("%w (%s)", errors.Join(werr, rerr), msg)
	}
	if werr == nil && rerr == nil {
		return errors.New("ffmpeg ended its output")
	}
	return errors.Join(werr, rerr)
}

// readOpus reads Ogg pages until EOF and gives out the Opus packets.
func (t *AACToOpus) readOpus(r io.Reader, ts *uint32) error {
	or := NewOggReader(r)
	for {
		pkt, err := or.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if isOpusHeader(pkt) {
			continue
		}
		n := OpusSamples(pkt)
		if n == 0 {
			continue
		}
		t.packets.Add(1)
		t.cfg.OnPacket(pkt, *ts)
		*ts += uint32(n)
	}
}

func isOpusHeader(p []byte) bool {
	return len(p) >= 8 && p[0] == 'O' && p[1] == 'p' && p[2] == 'u' && p[3] == 's' &&
		(string(p[4:8]) == "Head" || string(p[4:8]) == "Tags")
}

// tailBuffer keeps the last bytes of the child's stderr for the status.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if len(b.b) > b.max {
		b.b = append(b.b[:0], b.b[len(b.b)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := string(b.b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
