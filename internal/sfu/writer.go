package sfu

import (
	"sync"
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

	sinks cowList[*downTrack]

	// transportSeq numbers every packet sent on the subscriber's
	// transport (the transport-cc extension); owned by the goroutine.
	transportSeq uint16
}

// nextTransportSeq returns the transport-wide sequence number of the next
// packet; only the writer's goroutine calls it.
func (w *writer) nextTransportSeq() uint16 {
	s := w.transportSeq
	w.transportSeq++
	return s
}

func newWriter() *writer {
	w := &writer{wake: make(chan struct{}, 1), done: make(chan struct{}), ended: make(chan struct{})}
	go w.run()
	return w
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
			for _, d := range w.sinks.load() {
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
