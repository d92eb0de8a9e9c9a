package sfu

import (
	"sync"
	"sync/atomic"
)

// cowList is a copy-on-write list: the hot path reads it with one atomic
// load and no lock (a track's subscribers, a writer's sinks); the rare
// changes copy it under a mutex.
type cowList[T comparable] struct {
	mu sync.Mutex
	p  atomic.Pointer[[]T]
}

// load returns the current list; callers must not modify it.
func (c *cowList[T]) load() []T {
	if p := c.p.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *cowList[T]) add(x T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.load()
	n := append(append(make([]T, 0, len(old)+1), old...), x)
	c.p.Store(&n)
}

// remove drops x and reports whether it was there.
func (c *cowList[T]) remove(x T) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.load()
	n := make([]T, 0, len(old))
	for _, y := range old {
		if y != x {
			n = append(n, y)
		}
	}
	c.p.Store(&n)
	return len(n) != len(old)
}
