package sfu

import (
	"sync"
	"sync/atomic"
)

// writer is the goroutine that drains the queues of one subscriber's sinks:
// one per subscriber connection (a Participant's down-tracks share it, as
// they share the connection they are written to) or per stand-alone sink.
// Every sink keeps its own bounded queue, so a slow subscriber still costs
// only itself; sharing the goroutine saves a wake-up and a stack per track.
type writer struct {
	wake  chan struct{} // capacity 1: "some queue has work"
	done  chan struct{}
	ended chan struct{} // closed when run returns
	once  sync.Once

	mu    sync.Mutex // serializes changes of sinks
	sinks atomic.Pointer[[]*downTrack]
}

func newWriter() *writer {
	w := &writer{wake: make(chan struct{}, 1), done: make(chan struct{}), ended: make(chan struct{})}
	w.sinks.Store(&[]*downTrack{})
	go w.run()
	return w
}

func (w *writer) add(d *downTrack) {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := *w.sinks.Load()
	n := append(append(make([]*downTrack, 0, len(old)+1), old...), d)
	w.sinks.Store(&n)
}

func (w *writer) remove(d *downTrack) {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := *w.sinks.Load()
	n := make([]*downTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			n = append(n, x)
		}
	}
	w.sinks.Store(&n)
}

// stop ends the goroutine after the write in progress (closing the
// subscriber's connection makes a blocked write fail).
func (w *writer) stop() { w.once.Do(func() { close(w.done) }) }

// wait waits until the goroutine ended (after stop).
func (w *writer) wait() { <-w.ended }

// run drains the sinks round-robin, one batch each per round, until every
// queue is empty, then sleeps until the next packet.
func (w *writer) run() {
	defer close(w.ended)
	var batch [queueBatch]qentry
	var nacks [queueBatch]uint16
	for {
		select {
		case <-w.done:
			return
		case <-w.wake:
		}
		for busy := true; busy; {
			busy = false
			for _, d := range *w.sinks.Load() {
				if d.drain(batch[:], nacks[:]) {
					busy = true
				}
			}
			select {
			case <-w.done:
				return
			default:
			}
		}
	}
}
