// Package limit holds Parley's per-client limits: how many things one
// client address may hold at once (connections, pending sessions, TURN
// allocations) and how fast it may start new ones (rooms per minute).
// Every listener uses these two types, keyed by clientip.Key.
package limit

import (
	"net/netip"
	"sync"
	"time"
)

// Conns counts what each key holds at once, at most max each.
type Conns struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

// NewConns allows max at once per key; max <= 0 allows any number.
func NewConns(max int) *Conns { return &Conns{max: max, n: map[netip.Addr]int{}} }

// Acquire takes one slot for k. When ok, release must be called exactly
// once when the holder goes (extra calls are ignored).
func (c *Conns) Acquire(k netip.Addr) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.n[k] >= c.max {
		return func() {}, false
	}
	c.n[k]++
	var once sync.Once
	return func() { once.Do(func() { c.release(k) }) }, true
}

func (c *Conns) release(k netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[k] <= 1 {
		delete(c.n, k)
		return
	}
	c.n[k]--
}

// Count is what k holds now.
func (c *Conns) Count(k netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

// Bucket is a token bucket: rate tokens per second, up to burst. It is
// not safe for concurrent use; owners lock around it.
type Bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

// NewBucket starts full.
func NewBucket(rate, burst float64, now time.Time) Bucket {
	return Bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

// Take takes n tokens if there are that many.
func (b *Bucket) Take(n float64, now time.Time) bool {
	b.refill(now)
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

func (b *Bucket) refill(now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens += d.Seconds() * b.rate
		b.last = now
	}
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
}

// full reports whether the bucket has refilled completely (its key can be
// forgotten: a new bucket would be the same).
func (b *Bucket) full(now time.Time) bool {
	b.refill(now)
	return b.tokens >= b.burst
}

// Rate lets each key start n things per period, in bursts of up to n.
type Rate struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[netip.Addr]*Bucket
	sweepAt     int // sweep when this many keys are held
	minSweep    int
}

// NewRate allows n per period per key; n <= 0 allows any number.
func NewRate(n int, period time.Duration) *Rate {
	r := &Rate{buckets: map[netip.Addr]*Bucket{}, sweepAt: 1024, minSweep: 1024}
	if n > 0 {
		r.rate, r.burst = float64(n)/period.Seconds(), float64(n)
	}
	return r
}

// Allow takes one start for k at now.
func (r *Rate) Allow(k netip.Addr, now time.Time) bool {
	if r.burst == 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[k]
	if b == nil {
		if len(r.buckets) >= r.sweepAt {
			r.sweep(now)
		}
		nb := NewBucket(r.rate, r.burst, now)
		b = &nb
		r.buckets[k] = b
	}
	return b.Take(1, now)
}

// sweep forgets keys whose buckets are full again, so the map holds only
// clients active within about one period.
func (r *Rate) sweep(now time.Time) {
	for k, b := range r.buckets {
		if b.full(now) {
			delete(r.buckets, k)
		}
	}
	r.sweepAt = 2*len(r.buckets) + r.minSweep
}
