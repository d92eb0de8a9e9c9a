// Package backoff is the wait between the attempts of Parley's clients
// (IP camera pulls, restreaming pushes): doubling from Min to Max, each
// wait spread by ±20 % so clients that failed together do not retry
// together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff counts the waits of one client.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next is the wait before the next attempt (jittered); the one after
// doubles, up to Max.
func (b *Backoff) Next() time.Duration {
	if b.cur < b.Min {
		b.cur = b.Min
	}
	d := b.cur
	b.cur = min(2*b.cur, max(b.Max, b.Min))
	return Jitter(d)
}

// Reset starts again from Min (after a success).
func (b *Backoff) Reset() { b.cur = b.Min }

// Jitter spreads d by ±20 %.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/5 + rand.N(2*d/5+1)
}

// Sleep waits d, or less when ctx ends (then false).
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
