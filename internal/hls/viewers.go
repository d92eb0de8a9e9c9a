package hls

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// viewers are the clients of one muxer: each admitted once (the access
// hooks see one play per viewer, not one per part), counted while its
// requests keep coming, ended (on_done) when they stop for the window.
type viewers struct {
	window time.Duration
	mu     sync.Mutex
	m      map[string]*viewer
	closed bool
}

type viewer struct {
	last time.Time
	end  func()
}

func newViewers(window time.Duration) *viewers {
	return &viewers{window: window, m: map[string]*viewer{}}
}

// admit registers a request of the viewer key; a new viewer is first
// authorized (with a fresh session ID).
func (v *viewers) admit(key string, authorize func(id string) (func(), error)) error {
	now := time.Now()
	v.mu.Lock()
	if vw, ok := v.m[key]; ok {
		vw.last = now
		v.mu.Unlock()
		return nil
	}
	v.mu.Unlock()
	end, err := authorize(newID())
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if vw, ok := v.m[key]; ok || v.closed { // admitted twice at once, or gone
		end()
		if ok {
			vw.last = now
		}
		return nil
	}
	v.m[key] = &viewer{last: now, end: end}
	return nil
}

// count is the number of viewers seen within the window.
func (v *viewers) count() int {
	cut := time.Now().Add(-v.window)
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, vw := range v.m {
		if vw.last.After(cut) {
			n++
		}
	}
	return n
}

// sweep ends the viewers not seen within the window.
func (v *viewers) sweep(now time.Time) {
	cut := now.Add(-v.window)
	var ends []func()
	v.mu.Lock()
	for k, vw := range v.m {
		if !vw.last.After(cut) {
			ends = append(ends, vw.end)
			delete(v.m, k)
		}
	}
	v.mu.Unlock()
	for _, end := range ends {
		end()
	}
}

// close ends every viewer.
func (v *viewers) close() {
	v.mu.Lock()
	v.closed = true
	list := v.m
	v.m = map[string]*viewer{}
	v.mu.Unlock()
	for _, vw := range list {
		vw.end()
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "hls-" + hex.EncodeToString(b[:])
}
