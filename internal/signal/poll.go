package signal

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// pollSession is a session carried over HTTP long-poll.
type pollSession struct {
	*session
	id       string
	lastSeen atomic.Int64             // unix nanos of the last request
	polling  atomic.Bool              // a GET .../events is waiting
	first    atomic.Pointer[[][]byte] // sent before the queue (resumed, a carried message)
	gone     chan struct{}            // closed when a resume elsewhere took the session
}

// maxPollBatch bounds one events response.
const maxPollBatch = 256

// ServeHTTP routes the long-poll API under /api/session.
//
//	POST   /api/session              -> 201 {"id": "..."}
//	       (body {"type":"resume","resume":"<token>"}: resumes that member;
//	       410 resume-failed when it cannot)
//	POST   /api/session/{id}         one message as the body -> 204
//	GET    /api/session/{id}/events  -> 200 [messages...] (waits up to PollTimeout)
//	DELETE /api/session/{id}         leave and close -> 204
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" {
		if !h.opts.Origins.Allowed(origin) {
			httpError(w, http.StatusForbidden, protocol.CodeForbidden, "pages from "+origin+" may not use this server (see --public-host and --allow-origins)")
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Vary", "Origin")
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "POST, GET, DELETE")
			w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/session"), "/")
	id, sub, _ := strings.Cut(rest, "/")
	switch {
	case id == "" && r.Method == http.MethodPost:
		h.openPoll(w, r)
	case id == "":
		httpError(w, http.StatusMethodNotAllowed, protocol.CodeBadField, "use POST /api/session to open a session")
	case sub == "" && r.Method == http.MethodPost:
		h.withPoll(w, id, func(p *pollSession) { h.postToPoll(w, r, p) })
	case sub == "" && r.Method == http.MethodDelete:
		h.withPoll(w, id, func(p *pollSession) {
			p.fail(protocol.CodeNoSession, "session closed by the client")
			h.dropPoll(p)
			w.WriteHeader(http.StatusNoContent)
		})
	case sub == "events" && r.Method == http.MethodGet:
		h.withPoll(w, id, func(p *pollSession) { h.poll(w, r, p) })
	case sub == "" || sub == "events":
		w.Header().Set("Allow", "POST, GET, DELETE")
		httpError(w, http.StatusMethodNotAllowed, protocol.CodeBadField, r.Method+" is not allowed here")
	default:
		httpError(w, http.StatusNotFound, protocol.CodeNoSession, "no such endpoint")
	}
}

func (h *Hub) openPoll(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(h.opts.MaxMessage)))
	if err != nil {
		httpError(w, http.StatusBadRequest, protocol.CodeBadJSON, "could not read the body")
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		h.resumePoll(w, r, body)
		return
	}
	if p := h.newPoll(w, r); p != nil {
		h.addPoll(w, p)
	}
}

// newPoll registers a new HTTP session, in no room yet; nil when the
// limits refuse it (answered).
func (h *Hub) newPoll(w http.ResponseWriter, r *http.Request) *pollSession {
	p := &pollSession{session: h.newSession(HostOf(r), h.clientOf(r)), id: room.NewSecret(), gone: make(chan struct{})}
	p.poll = true
	p.lastSeen.Store(h.opts.Now().UnixNano())
	if err := h.register(p.session); err != nil {
		ref := err.(*refusal)
		status := http.StatusServiceUnavailable
		if ref == errPerIP {
			status = http.StatusTooManyRequests
		}
		httpError(w, status, ref.code, ref.msg)
		return nil
	}
	return p
}

// resumePoll opens an HTTP session on the member a resume token names.
func (h *Hub) resumePoll(w http.ResponseWriter, r *http.Request, body []byte) {
	m, err := protocol.Decode(body)
	if err == nil && m.Type != protocol.TypeResume {
		err = &protocol.Error{Code: protocol.CodeBadField, Msg: "the body of POST /api/session is empty or a resume message"}
	}
	if err != nil {
		var pe *protocol.Error
		errors.As(err, &pe)
		h.errors.Inc(pe.Code)
		httpError(w, http.StatusBadRequest, pe.Code, pe.Msg)
		return
	}
	s, token, err := h.claim(m.Resume)
	if err == nil {
		err = s.replayAfter(m.Got)
	}
	if err != nil && h.movePoll(w, r, m.Resume) {
		return // a member of another node moved here (move.go)
	}
	if err != nil {
		h.errors.Inc(protocol.CodeResumeFailed)
		httpError(w, http.StatusGone, protocol.CodeResumeFailed, "that session cannot be resumed ("+err.Error()+"); join again")
		return
	}
	p := &pollSession{session: s, id: room.NewSecret(), gone: make(chan struct{})}
	first := [][]byte{resumedMessage(s, token)}
	if s.carry != nil {
		first = append(first, s.carry)
		s.carry = nil
	}
	first = append(first, s.again...)
	s.again = nil
	p.first.Store(&first)
	p.lastSeen.Store(h.opts.Now().UnixNano())
	h.addPoll(w, p)
}

// addPoll makes p reachable under its ID and answers its opening.
func (h *Hub) addPoll(w http.ResponseWriter, p *pollSession) {
	h.mu.Lock()
	h.polls[p.id] = p
	h.mu.Unlock()
	h.attach(p.session, func() { h.detachPoll(p) })
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write(mustJSON(map[string]string{"id": p.id}))
}

// detachPoll forgets p's ID, so its client is done with it, and lets the
// session go (to a resume, or to its grace).
func (h *Hub) detachPoll(p *pollSession) {
	if h.forgetPoll(p) {
		close(p.gone)
		h.connEnded(p.session)
	}
}

func (h *Hub) withPoll(w http.ResponseWriter, id string, f func(*pollSession)) {
	h.mu.Lock()
	p := h.polls[id]
	h.mu.Unlock()
	if p == nil {
		httpError(w, http.StatusNotFound, protocol.CodeNoSession, "no such session; open a new one with POST /api/session")
		return
	}
	p.lastSeen.Store(h.opts.Now().UnixNano())
	f(p)
}

func (h *Hub) postToPoll(w http.ResponseWriter, r *http.Request, p *pollSession) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(h.opts.MaxMessage)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.errors.Inc(protocol.CodeTooLarge)
			httpError(w, http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "message is larger than the limit")
			return
		}
		httpError(w, http.StatusBadRequest, protocol.CodeBadJSON, "could not read the body")
		return
	}
	if p.isFailed() {
		httpError(w, http.StatusGone, p.reason.Code, p.reason.Message)
		return
	}
	p.handle(body)
	w.WriteHeader(http.StatusNoContent)
}

// poll waits for at least one message (or the timeout) and returns all
// that are queued. After a failure it returns the final error once and the
// session is gone.
func (h *Hub) poll(w http.ResponseWriter, r *http.Request, p *pollSession) {
	if !p.polling.CompareAndSwap(false, true) {
		httpError(w, http.StatusConflict, protocol.CodeBadField, "another poll is already waiting on this session")
		return
	}
	defer func() {
		p.polling.Store(false)
		p.lastSeen.Store(h.opts.Now().UnixNano())
	}()
	timer := time.NewTimer(h.opts.PollTimeout)
	defer timer.Stop()
	batch := make([][]byte, 0, 8)
	if first := p.first.Swap(nil); first != nil {
		batch = append(batch, *first...)
	}
	if len(batch) == 0 {
		select {
		case b := <-p.out:
			p.took(b)
			batch = append(batch, b)
		case <-p.failed:
		case <-p.gone:
			httpError(w, http.StatusNotFound, protocol.CodeNoSession, "this session was resumed elsewhere")
			return
		case <-timer.C:
		case <-r.Context().Done():
			return
		case <-h.ctx.Done():
		}
	}
more:
	for len(batch) < maxPollBatch {
		select {
		case b := <-p.out:
			p.took(b)
			batch = append(batch, b)
		default:
			break more
		}
	}
	if len(batch) < maxPollBatch && p.isFailed() {
		batch = append(batch, mustJSON(p.reason))
		h.dropPoll(p)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	var buf bytes.Buffer
	buf.WriteByte('[')
	buf.Write(bytes.Join(batch, []byte{','}))
	buf.WriteByte(']')
	w.Write(buf.Bytes())
}

// forgetPoll takes p's ID out of use; false if it was already.
func (h *Hub) forgetPoll(p *pollSession) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.polls[p.id]
	delete(h.polls, p.id)
	return ok
}

func (h *Hub) dropPoll(p *pollSession) {
	if h.forgetPoll(p) {
		h.finish(p.session)
	}
}

func (h *Hub) dropAllPolls() {
	h.mu.Lock()
	all := make([]*pollSession, 0, len(h.polls))
	for _, p := range h.polls {
		all = append(all, p)
	}
	h.mu.Unlock()
	for _, p := range all {
		h.dropPoll(p)
	}
}

// reapIdlePolls closes HTTP sessions nobody has asked about for SessionIdle.
func (h *Hub) reapIdlePolls() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.SessionIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			h.dropAllPolls()
			return
		case <-t.C:
		}
		cutoff := h.opts.Now().Add(-h.opts.SessionIdle).UnixNano()
		var idle []*pollSession
		h.mu.Lock()
		for _, p := range h.polls {
			if !p.polling.Load() && p.lastSeen.Load() < cutoff {
				idle = append(idle, p)
			}
		}
		h.mu.Unlock()
		for _, p := range idle {
			h.log.Debug("HTTP session idle", "member", p.member.ID)
			h.detachPoll(p) // a member in a room waits for a resume
		}
	}
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(mustJSON(protocol.ErrorMessage(code, msg)))
}
