package hls

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/bluenviron/gohlslib/v2"
)

// Blocking playlist reload is answered here rather than by gohlslib,
// whose wait (a) cannot end when the client goes away and (b) does not
// treat a request for the part after a finished segment's last part as
// part 0 of the next segment, as LL-HLS says a server must: hls.js asks
// exactly that at every segment's end, and would wait a whole segment.
//
// A watcher per muxer follows the live edge: it asks the muxer for the
// preload-hinted part (which returns when that part is done), then for
// the leading media playlist, and publishes what it lists. Blocking
// requests wait on that (and on their context), then get the muxer's
// current playlist without the directives, shared among all who waited
// for the same part (shared.go).

// edge is the live edge of a muxer's playlists.
type edge struct {
	mu      sync.Mutex
	changed chan struct{}     // closed and replaced at each change
	known   bool              // a playlist was read
	oldest  uint64            // media sequence number of the oldest segment listed
	making  uint64            // media sequence number of the segment being made
	parts   uint64            // its parts so far
	counts  map[uint64]uint64 // finished segments' parts, where the playlist lists them
}

func newEdge() *edge { return &edge{changed: make(chan struct{}), counts: map[uint64]uint64{}} }

// update reads a media playlist.
func (e *edge) update(pl string) (hint string) {
	seq, segs, parts := uint64(0), uint64(0), uint64(0)
	counts := map[uint64]uint64{}
	for _, l := range strings.Split(pl, "\n") {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			seq, _ = strconv.ParseUint(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
		case strings.HasPrefix(l, "#EXT-X-PART:"):
			parts++
		case strings.HasPrefix(l, "#EXTINF:"):
			if parts > 0 {
				counts[seq+segs] = parts
			}
			segs++
			parts = 0
		case strings.HasPrefix(l, "#EXT-X-PRELOAD-HINT:"):
			if _, u, ok := strings.Cut(l, `URI="`); ok {
				hint, _, _ = strings.Cut(u, `"`)
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.known, e.oldest, e.making, e.parts = true, seq, seq+segs, parts
	for msn, n := range counts {
		e.counts[msn] = n
	}
	for msn := range e.counts {
		if msn < seq {
			delete(e.counts, msn)
		}
	}
	close(e.changed)
	e.changed = make(chan struct{})
	return hint
}

// errAhead: a request too far past the live edge (answered 400).
var errAhead = errors.New("hls: _HLS_msn is more than one segment past the live edge")

// wholeSegment as a part index: the request names no part, and waits for
// the whole segment (a player that is not low-latency).
const wholeSegment = ^uint64(0)

// has reports whether the playlist has part (msn, part); the part after
// a finished segment's last is part 0 of the next segment. It answers
// with the state's change channel to wait on when not.
func (e *edge) has(msn, part uint64) (bool, <-chan struct{}, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.known:
		return false, e.changed, nil
	case msn > e.making+1:
		return false, nil, errAhead
	case part == wholeSegment && msn < e.making:
		return true, nil, nil
	case part == wholeSegment:
		return false, e.changed, nil
	}
	for msn < e.making {
		n, ok := e.counts[msn]
		if !ok || part < n { // older than the parts listed, or there
			return true, nil, nil
		}
		msn, part = msn+1, 0
	}
	if msn == e.making && part < e.parts {
		return true, nil, nil
	}
	return false, e.changed, nil
}

// wait waits until the playlist has part (msn, part), ctx ends or the
// muxer stops.
func (e *edge) wait(ctx context.Context, done <-chan struct{}, msn, part uint64) error {
	for {
		ok, changed, err := e.has(msn, part)
		if ok || err != nil {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrClosed
		}
	}
}

// watch follows the muxer's live edge until ctx ends or the muxer closes.
func (e *edge) watch(ctx context.Context, h *gohlslib.Muxer, media string) {
	for ctx.Err() == nil {
		pl := &probeWriter{header: http.Header{}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/"+media, nil)
		h.Handle(pl, req)
		if pl.status != http.StatusOK {
			return
		}
		hint := e.update(string(pl.body))
		if hint == "" {
			return
		}
		part := &probeWriter{header: http.Header{}, discard: true}
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "/"+hint, nil)
		h.Handle(part, req) // returns when the hinted part is done, or the muxer closed
		if part.status != http.StatusOK {
			return
		}
	}
}

// directives reads a blocking request's _HLS_msn and _HLS_part, and the
// query without them (the muxer then answers its current playlist).
func directives(q url.Values) (msn, part uint64, rest string, err error) {
	msn, err = strconv.ParseUint(q.Get("_HLS_msn"), 10, 64)
	if err != nil {
		return 0, 0, "", err
	}
	part = wholeSegment
	if p := q.Get("_HLS_part"); p != "" {
		if part, err = strconv.ParseUint(p, 10, 64); err != nil || part == wholeSegment {
			return 0, 0, "", errors.New("hls: bad _HLS_part")
		}
	}
	q.Del("_HLS_msn")
	q.Del("_HLS_part")
	return msn, part, q.Encode(), nil
}
