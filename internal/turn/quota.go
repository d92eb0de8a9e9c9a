package turn

import (
	"net"
	"sync"

	"github.com/parley/parley/internal/auth"
)

// quota limits concurrent allocations per REST user. pion asks the
// QuotaHandler before creating an allocation and reports the outcome only
// through events, so a granted request is held as "pending" under its
// client address until OnAllocationCreated confirms it or
// OnAllocationError releases it. Counting pending slots closes the race
// where two Allocates from one user arrive on different sockets at once.
type quota struct {
	limit   int
	mu      sync.Mutex
	used    map[string]int    // user -> active + pending allocations
	pending map[string]string // client address -> user
}

func newQuota(limit int) *quota {
	return &quota{limit: limit, used: make(map[string]int), pending: make(map[string]string)}
}

// userOf is the quota key: the part after ':' of a REST username, so one
// person's credentials with different expiries share a quota.
func userOf(username string) string {
	if _, user, ok := auth.TURNExpiry(username); ok {
		return user
	}
	return username
}

// allow reserves a slot for username's new allocation from src.
func (q *quota) allow(username string, src net.Addr) bool {
	user, key := userOf(username), addrKey(src)
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, dup := q.pending[key]; dup {
		q.releaseLocked(key)
	}
	if q.used[user] >= q.limit {
		return false
	}
	q.used[user]++
	q.pending[key] = user
	return true
}

// created confirms the pending slot for src (or takes a slot if the
// allocation bypassed allow, which pion does not do today).
func (q *quota) created(username string, src net.Addr) {
	key := addrKey(src)
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[key]; ok {
		delete(q.pending, key)
		return
	}
	q.used[userOf(username)]++
}

// deleted frees the slot of an allocation that ended.
func (q *quota) deleted(username string) {
	user := userOf(username)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.decLocked(user)
}

// failed frees a pending slot whose allocation was not created.
func (q *quota) failed(src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked(addrKey(src))
}

func (q *quota) releaseLocked(key string) {
	if user, ok := q.pending[key]; ok {
		delete(q.pending, key)
		q.decLocked(user)
	}
}

func (q *quota) decLocked(user string) {
	if q.used[user] <= 1 {
		delete(q.used, user)
		return
	}
	q.used[user]--
}

// addrKey names a client transport address; UDP and TCP ports are
// separate spaces, so the network is part of the key.
func addrKey(a net.Addr) string { return a.Network() + "/" + a.String() }
