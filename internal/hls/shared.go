package hls

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
)

// Blocking playlist requests for the same URL (the same part, the same
// token) wait for the same moment and get the same playlist: the first
// one asks the muxer, the others wait for its answer and share it, as a
// CDN in front would. With a thousand players that is one playlist made
// per part instead of a thousand, all under the muxer's lock.
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
	m  map[string]*answer
}

// answer is one blocking playlist answer; done is closed when it is in.
type answer struct {
	done   chan struct{}
	at     time.Time
	status int
	header http.Header
	body   []byte
}

// serve answers r (a blocking playlist request, its directives taken out)
// from the shared answer of key (its URL as asked), asking the muxer when
// no one has yet.
func (s *sharedAnswers) serve(w http.ResponseWriter, r *http.Request, key string, h *gohlslib.Muxer) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]*answer{}
	}
	a, ok := s.m[key]
	if !ok && len(s.m) >= maxShared {
		s.mu.Unlock()
		h.Handle(w, r)
		return
	}
	if !ok {
		a = &answer{done: make(chan struct{}), header: http.Header{}}
		s.m[key] = a
	}
	s.mu.Unlock()
	if !ok {
		rec := &recorder{a: a}
		// Not ended with this client, whose answer others may wait for.
		h.Handle(rec, r.WithContext(context.WithoutCancel(r.Context())))
		a.at = time.Now()
		close(a.done)
		if a.status != http.StatusOK {
			s.mu.Lock()
			delete(s.m, key) // errors are not shared past the waiters
			s.mu.Unlock()
		}
	} else {
		select {
		case <-a.done:
		case <-r.Context().Done():
			return
		}
	}
	for k, v := range a.header {
		w.Header()[k] = v
	}
	if a.status != 0 {
		w.WriteHeader(a.status)
	}
	_, _ = w.Write(a.body)
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
