package turn

import (
	"net"
	"net/netip"
	"sync"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/clientip"
)

// quota limits concurrent allocations per REST user and per client
// address (clientip.Key: the IPv4 address, or the IPv6 /64), across
// usernames: one client joining three rooms has three usernames but one
// address. pion asks the QuotaHandler before creating an allocation and
// reports the outcome only through events, so a granted request is held
// as "pending" under its client transport address until
// OnAllocationCreated confirms it or OnAllocationError releases it.
// Counting pending slots closes the race where two Allocates from one user
// arrive on different sockets at once.
type quota struct {
	limit, perIP int
	mu           sync.Mutex
	used         map[string]int     // user -> active + pending allocations
	byIP         map[netip.Addr]int // client key -> active + pending allocations
	pending      map[string]slot    // client transport address -> its pending slot
}

// slot is what one allocation holds.
type slot struct {
	user string
	ip   netip.Addr
}

// Why allow refused.
const (
	refusedUser = "user"
	refusedIP   = "address"
)

func newQuota(limit, perIP int) *quota {
	return &quota{limit: limit, perIP: perIP, used: make(map[string]int), byIP: make(map[netip.Addr]int), pending: make(map[string]slot)}
}

// userOf is the quota key: the part after ':' of a REST username, so one
// person's credentials with different expiries share a quota.
func userOf(username string) string {
	if _, user, ok := auth.TURNExpiry(username); ok {
		return user
	}
	return username
}

func slotOf(username string, src net.Addr) slot {
	return slot{user: userOf(username), ip: clientip.Key(clientip.Addr(src))}
}

// allow reserves a slot for username's new allocation from src; refused
// names the limit that was reached ("" when allowed).
func (q *quota) allow(username string, src net.Addr) (refused string) {
	sl, key := slotOf(username, src), addrKey(src)
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, dup := q.pending[key]; dup {
		q.releaseLocked(key)
	}
	switch {
	case q.used[sl.user] >= q.limit:
		return refusedUser
	case q.perIP > 0 && q.byIP[sl.ip] >= q.perIP:
		return refusedIP
	}
	q.takeLocked(sl)
	q.pending[key] = sl
	return ""
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
	q.takeLocked(slotOf(username, src))
}

// deleted frees the slot of an allocation that ended.
func (q *quota) deleted(username string, src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.freeLocked(slotOf(username, src))
}

// failed frees a pending slot whose allocation was not created.
func (q *quota) failed(src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked(addrKey(src))
}

// perAddress is how many allocations a client address holds.
func (q *quota) perAddress(a netip.Addr) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.byIP[clientip.Key(a)]
}

func (q *quota) releaseLocked(key string) {
	if sl, ok := q.pending[key]; ok {
		delete(q.pending, key)
		q.freeLocked(sl)
	}
}

func (q *quota) takeLocked(sl slot) {
	q.used[sl.user]++
	q.byIP[sl.ip]++
}

func (q *quota) freeLocked(sl slot) {
	decKey(q.used, sl.user)
	decKey(q.byIP, sl.ip)
}

// decKey decrements m[k], forgetting keys that reach zero.
func decKey[K comparable](m map[K]int, k K) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}

// addrKey names a client transport address; UDP and TCP ports are
// separate spaces, so the network is part of the key.
func addrKey(a net.Addr) string { return a.Network() + "/" + a.String() }
