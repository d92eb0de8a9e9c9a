package hls

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"
)

// muxer is one stream's LL-HLS: a tap reader feeding a gohlslib muxer,
// from the first request until idle, stalled or the stream's end.
type muxer struct {
	m       *Manager
	stream  string
	keep    bool // hls: always (no idle stop)
	viewers *viewers
	shared  sharedAnswers // blocking playlist answers (shared.go)
	edge    *edge         // the live edge blocking requests wait on (edge.go)

	ready chan struct{} // closed when the first segment is out
	done  chan struct{} // closed when run has returned

	lastReq  atomic.Int64 // unix nanoseconds of the last request's start or end
	inflight atomic.Int32 // requests being answered (a blocked one keeps the muxer)

	mu     sync.Mutex
	hls    *gohlslib.Muxer // set once started
	err    error           // why it failed or ended
	notes  []string
	reader Reader
}

func newMuxer(m *Manager, stream string, keep bool) *muxer {
	mx := &muxer{m: m, stream: stream, keep: keep, edge: newEdge(), ready: make(chan struct{}), done: make(chan struct{})}
	mx.viewers = newViewers(m.cfg.ViewerWindow)
	mx.touch()
	return mx
}

func (mx *muxer) touch() { mx.lastReq.Store(time.Now().UnixNano()) }

// run reads the stream into the muxer until it ends, and says why.
func (mx *muxer) run(parent context.Context) (err error) {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		mx.mu.Lock()
		mx.err = err
		h := mx.hls
		mx.mu.Unlock()
		if h != nil {
			h.Close() // releases the requests blocked in it
		}
		wg.Wait()
		mx.viewers.close()
		close(mx.done)
	}()
	openCtx, openCancel := context.WithTimeout(ctx, mx.m.cfg.StartTimeout)
	r, err := mx.m.cfg.Open(openCtx, mx.stream)
	openCancel()
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", mx.stream, err)
	}
	defer r.Close()
	tracks, notes, err := mapTracks(r.Tracks())
	if err != nil {
		return err
	}
	h := &gohlslib.Muxer{
		Variant:            gohlslib.MuxerVariantLowLatency,
		SegmentCount:       7,
		SegmentMinDuration: mx.m.cfg.Segment,
		PartMinDuration:    mx.m.cfg.Part,
		OnEncodeError: func(err error) {
			mx.m.cfg.Logger.Debug("hls muxer", "stream", mx.stream, "err", err)
		},
	}
	for _, t := range tracks {
		h.Tracks = append(h.Tracks, t.track)
	}
	if err := h.Start(); err != nil {
		return fmt.Errorf("starting the muxer of %s: %w", mx.stream, err)
	}
	mx.mu.Lock()
	mx.hls, mx.notes, mx.reader = h, notes, r
	mx.mu.Unlock()

	wg.Add(2)
	go func() { // the first playlist: the muxer has its first segment
		defer wg.Done()
		probe := &probeWriter{header: http.Header{}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/index.m3u8", nil)
		h.Handle(probe, req)
		if probe.status != http.StatusOK {
			return
		}
		media := leadingPlaylist(string(probe.body))
		// The live edge is known before any request can wait on it.
		pl := &probeWriter{header: http.Header{}}
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "/"+media, nil)
		h.Handle(pl, req)
		mx.edge.update(string(pl.body))
		close(mx.ready)
		mx.edge.watch(ctx, h, media)
	}()
	go func() { // idle: no request for Config.Idle
		defer wg.Done()
		t := time.NewTicker(min(time.Second, mx.m.cfg.Idle/4))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				mx.viewers.sweep(now)
				mx.shared.sweep(now)
				if !mx.keep && mx.inflight.Load() == 0 && now.Sub(time.Unix(0, mx.lastReq.Load())) > mx.m.cfg.Idle {
					cancel()
					return
				}
			}
		}
	}()
	return mx.feed(ctx, r, h, tracks)
}

// feed writes the reader's frames to the muxer until the stream ends.
func (mx *muxer) feed(ctx context.Context, r Reader, h *gohlslib.Muxer, tracks []hlsTrack) error {
	byTap := map[int]hlsTrack{}
	for _, t := range tracks {
		byTap[t.tap] = t
	}
	var base time.Duration
	started := false
	for {
		rctx, rcancel := context.WithTimeout(ctx, mx.m.cfg.Stall)
		f, err := r.Read(rctx)
		rcancel()
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("stream %s ended: %w", mx.stream, io.EOF)
		case ctx.Err() != nil:
			return fmt.Errorf("stream %s: idle or closed: %w", mx.stream, ctx.Err())
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("stream %s sent nothing for %v", mx.stream, mx.m.cfg.Stall)
		case err != nil:
			return fmt.Errorf("reading stream %s: %w", mx.stream, err)
		}
		t, ok := byTap[f.Track]
		if !ok || len(f.AU) == 0 {
			continue
		}
		if !started {
			base, started = f.PTS, true
		}
		pts := ticks(f.PTS-base, t.track.ClockRate)
		if err := t.write(h, t.track, f.NTP, pts, f.AU); err != nil {
			// One bad frame (a broken access unit) is skipped; the muxer
			// resumes at the next keyframe.
			mx.m.cfg.Logger.Debug("hls: frame not muxed", "stream", mx.stream, "err", err)
		}
	}
}

// leadingPlaylist is the media playlist a multivariant playlist's
// variant names (the leading track's: the others change in step).
func leadingPlaylist(mv string) string {
	for _, l := range strings.Split(mv, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			name, _, _ := strings.Cut(l, "?")
			return name
		}
	}
	return ""
}

// wait waits, up to Config.StartTimeout, for the first segment.
func (mx *muxer) wait(ctx context.Context) error {
	t := time.NewTimer(mx.m.cfg.StartTimeout)
	defer t.Stop()
	select {
	case <-mx.ready:
		return nil
	case <-mx.done:
		return mx.failure()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errStartTimeout
	}
}

var errStartTimeout = errors.New("hls: the stream's first segment did not come in time")

func (mx *muxer) failure() error {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	if mx.err == nil {
		return ErrClosed
	}
	return mx.err
}

func (mx *muxer) muxerOf() *gohlslib.Muxer {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return mx.hls
}

func (mx *muxer) dropped() uint64 {
	mx.mu.Lock()
	r := mx.reader
	mx.mu.Unlock()
	if r == nil {
		return 0
	}
	return r.Stats().Dropped
}

func (mx *muxer) status() Status {
	st := Status{State: "starting", Viewers: mx.viewers.count()}
	select {
	case <-mx.ready:
		st.State = "live"
	default:
	}
	mx.mu.Lock()
	st.Notes = mx.notes
	mx.mu.Unlock()
	return st
}

// probeWriter is the ResponseWriter of the muxer's own requests (the
// first-segment probe, the live-edge watcher).
type probeWriter struct {
	header  http.Header
	status  int
	body    []byte
	discard bool // keep no body
}

func (p *probeWriter) Header() http.Header { return p.header }
func (p *probeWriter) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *probeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	if !p.discard {
		p.body = append(p.body, b...)
	}
	return len(b), nil
}
