package signal

import (
	"slices"
	"sync"
)

// Nothing lost in a dead socket (issue #14). A connection can be dead
// before either side knows: what the server wrote into it meanwhile, and
// what the client sent, is gone. Both sides count the messages of a
// member, from the start of the connection it joined on: the server those
// its transports took from the member's outbox and those it received, the
// client the same. A resume says how many the client received (got), and
// the server sends again those after; resumed says how many the server
// received, and the client sends again those after. Pings and pongs carry
// the counts too, so each side can forget what the other has.
//
// The server keeps the last Options.Replay messages (at most
// Options.ReplayBytes) it took for a member, encoded, shared with the
// other receivers; a resume that needs more is refused, and the client
// joins afresh. It keeps nothing for a client that has not shown it
// counts (a "got" in its join, a ping or a resume): the Go client, the
// load tools and older pages never acknowledge, and would make it hold
// its bound for as long as they stay.

// replay is what a session's transports took from its outbox, kept for a
// resume until the client acknowledges it.
type replay struct {
	max, maxBytes int

	mu       sync.Mutex
	counting bool     // the client acknowledges: keep what it may not have
	sent     int64    // messages taken from the outbox, ever
	kept     [][]byte // the last of them: kept[len(kept)-1] is number sent
	bytes    int      // in kept
}

// took records a message a transport took for its client.
func (r *replay) took(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent++
	if r.max <= 0 || !r.counting {
		return
	}
	r.kept = append(r.kept, b)
	r.bytes += len(b)
	for len(r.kept) > r.max || r.bytes > r.maxBytes {
		r.bytes -= len(r.kept[0])
		r.kept[0] = nil
		r.kept = r.kept[1:]
	}
}

// ack forgets the messages the client says it has, the first got, and
// from now on keeps what it may not have.
func (r *replay) ack(got int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counting = true
	if got < 0 || got > r.sent {
		return
	}
	drop := len(r.kept) - int(r.sent-got) // kept messages numbered up to got
	for i := 0; i < drop; i++ {
		r.bytes -= len(r.kept[i])
		r.kept[i] = nil
	}
	if drop > 0 {
		r.kept = r.kept[drop:]
	}
}

// since returns the messages after the first got, false when some of
// them are no longer kept (or got is more than was sent).
func (r *replay) since(got int64) ([][]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	need := r.sent - got
	if need < 0 || need > int64(len(r.kept)) {
		return nil, false
	}
	return slices.Clone(r.kept[len(r.kept)-int(need):]), true
}
