package hls

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
)

// Blocking playlist requests for the same URL (the same part, the same
// token) wait for the same moment and get the same playlist: the first
// one asks the muxer, the others wait for its answer and share it, as a
// CDN in front would. With a thousand players that is one playlist made
// per part instead of a thousand, all under the muxer's lock, and each
// answer is the same bytes with headers built once.
//
// An answer is kept for sharedFor (the blocking answer's max-age says a
// cache may keep it that long); at most maxShared URLs are kept, and a
// request past that asks the muxer itself.
const (
	sharedFor = 10 * time.Second
	maxShared = 1024
)

type sharedAnswers struct {
	mu sync.Mutex
	m  map[sharedKey]*answer
}

// sharedKey is a blocking request's URL as asked.
type sharedKey struct{ path, query string }

// answer is the muxer's answer to one request, shared by all who asked
// for it (blocking playlists, media files); done is closed when it is
// in, and its fields do not change after that.
type answer struct {
	done   chan struct{}
	at     time.Time
	msn    uint64 // media files: the segment being made when asked (fileCache.sweep)
	status int
	header http.Header // as the muxer set it
	body   []byte
	ctype  []string // Content-Type and Content-Length of a 200, as a header map holds them
	length []string
}

func newAnswer() *answer { return &answer{done: make(chan struct{}), header: http.Header{}} }

// fill asks the muxer; the request is not ended with its client, whose
// answer others may wait for. The caller closes done once its cache's
// bookkeeping is done (a sweep only touches answers that are done).
func (a *answer) fill(h *gohlslib.Muxer, r *http.Request) {
	h.Handle(&recorder{a: a}, r.WithContext(context.WithoutCancel(r.Context())))
	if a.status == http.StatusOK {
		a.ctype = []string{a.header.Get("Content-Type")}
		a.length = []string{strconv.Itoa(len(a.body))}
	}
	a.at = time.Now()
}

// wait waits for the answer; false when ctx ended first.
func (a *answer) wait(ctx context.Context) bool {
	select {
	case <-a.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// write sends a 200 answer with the Cache-Control cache.
func (a *answer) write(w http.ResponseWriter, r *http.Request, cache []string) {
	h := w.Header()
	h["Content-Type"] = a.ctype
	h["Content-Length"] = a.length
	h["Cache-Control"] = cache
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(a.body)
	}
}

// get answers r (a blocking playlist request, its directives taken out
// by rest) from the shared answer of key, asking the muxer when no one
// has yet; nil when r's client went first.
func (s *sharedAnswers) get(r *http.Request, key sharedKey, rest func() *http.Request, h *gohlslib.Muxer) *answer {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[sharedKey]*answer{}
	}
	a, ok := s.m[key]
	if !ok {
		a = newAnswer()
		if len(s.m) < maxShared {
			s.m[key] = a
		}
	}
	s.mu.Unlock()
	if ok {
		if !a.wait(r.Context()) {
			return nil
		}
		return a
	}
	a.fill(h, rest())
	if a.status != http.StatusOK {
		s.mu.Lock()
		if s.m[key] == a {
			delete(s.m, key) // errors are not shared past the waiters
		}
		s.mu.Unlock()
	}
	close(a.done)
	return a
}

// sweep forgets the answers older than sharedFor.
func (s *sharedAnswers) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, a := range s.m {
		select {
		case <-a.done:
			if now.Sub(a.at) > sharedFor {
				delete(s.m, k)
			}
		default:
		}
	}
}

// recorder keeps the muxer's answer for an answer.
type recorder struct{ a *answer }

func (rc *recorder) Header() http.Header { return rc.a.header }
func (rc *recorder) WriteHeader(code int) {
	if rc.a.status == 0 {
		rc.a.status = code
	}
}
func (rc *recorder) Write(b []byte) (int, error) {
	rc.WriteHeader(http.StatusOK)
	rc.a.body = append(rc.a.body, b...)
	return len(b), nil
}
