package hls

import (
	"net/http"
	"sync"

	"github.com/bluenviron/gohlslib/v2"
)

// Init files, parts and segments never change under their name, and
// every player of a stream fetches the same ones within a few
// milliseconds of each other. The first request for a file asks the
// muxer (waiting, for the preload-hinted part, until it is made); the
// others wait for that answer, and every later one is served from the
// same bytes with headers built once: no copy and no allocation per
// request. A file is forgotten once the playlist no longer lists the
// segment that was being made when it was first asked (sweep).
const (
	// maxFileBytes bounds the bytes a muxer's cache holds (7 segments
	// and their parts of a 20 Mbit/s stream with 2 s segments fit); past
	// it, a file is served to those who waited for it and not kept.
	maxFileBytes = 80 << 20
	// maxFiles bounds the files kept (7 segments of 25 parts each, for
	// an audio and a video rendition, fit).
	maxFiles = 1024
)

// keepFile is the msn of files the sweep keeps (init files).
const keepFile = ^uint64(0)

type fileCache struct {
	mu    sync.Mutex
	m     map[string]*answer
	bytes int
}

// get answers the muxer's file name (msn: the segment being made now, or
// keepFile), from the cache or asking the muxer once for all who ask at
// the same time; nil when r's client went first.
func (c *fileCache) get(r *http.Request, name string, msn uint64, h *gohlslib.Muxer) *answer {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*answer{}
	}
	f, ok := c.m[name]
	if !ok {
		f = newAnswer()
		f.msn = msn
		c.m[name] = f
	}
	c.mu.Unlock()
	if ok {
		if !f.wait(r.Context()) {
			return nil
		}
		return f
	}
	f.fill(h, r)
	c.mu.Lock()
	if f.status != http.StatusOK || c.bytes+len(f.body) > maxFileBytes || len(c.m) > maxFiles {
		delete(c.m, name) // errors (an unknown name) are not kept past the waiters
	} else {
		c.bytes += len(f.body)
	}
	c.mu.Unlock()
	close(f.done) // after the count: sweep subtracts only what was added
	return f
}

// sweep forgets the files first asked while a segment older than oldest
// (the oldest the playlist lists) was being made.
func (c *fileCache) sweep(oldest uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, f := range c.m {
		select {
		case <-f.done:
			if f.msn < oldest {
				c.bytes -= len(f.body)
				delete(c.m, k)
			}
		default:
		}
	}
}
