package sfu

import (
	"sync"
	"sync/atomic"
	"time"
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
	// sent remembers those packets for the subscriber's TWCC feedback
	// (bwe.go); nil for a stand-alone sink.
	sent *sentLog
	// probe is the padding rate (bit/s) the estimator wants sent now.
	probe atomic.Uint64
	// now is the send time of the batch being written (abs-send-time,
	// sentLog): read once per batch that has packets (drain), as the clock
	// costs more than the rest of a packet's rewriting.
	now time.Time
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

// newTransportWriter is newWriter for a subscriber's connection, whose
// packets are numbered and remembered for the bandwidth estimate.
func newTransportWriter() *writer {
	w := &writer{wake: make(chan struct{}, 1), done: make(chan struct{}), ended: make(chan struct{}), sent: &sentLog{epoch: time.Now()}}
	go w.run()
	return w
}

// setProbe asks for padding at bps (0: none) and wakes the goroutine to
// start or stop its padding tick.
func (w *writer) setProbe(bps uint64) {
	if w.probe.Swap(bps) != bps {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// stop ends the goroutine after the write in progress (closing the
// subscriber's connection makes a blocked write fail).
func (w *writer) stop() { w.once.Do(func() { close(w.done) }) }

// wait waits until the goroutine ended (after stop).
func (w *writer) wait() { <-w.ended }

// run drains the sinks round-robin, one batch each per round, until every
// queue is empty, then sleeps until the next packet. While the estimator
// probes, it also sends padding every padInterval.
func (w *writer) run() {
	defer close(w.ended)
	var batch [queueBatch]qentry
	var nacks [queueBatch]uint16
	var pad *time.Ticker
	var padC <-chan time.Time
	defer func() {
		if pad != nil {
			pad.Stop()
		}
	}()
	for {
		select {
		case <-w.done:
			return
		case <-w.wake:
		case <-padC:
			w.pad()
		}
		if probing := w.probe.Load() > 0; probing && pad == nil {
			pad = time.NewTicker(padInterval)
			padC = pad.C
		} else if !probing && pad != nil {
			pad.Stop()
			pad, padC = nil, nil
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

// pad sends one padInterval's worth of probe padding, on the first video
// down-track that can carry it (RTX negotiated, flowing).
func (w *writer) pad() {
	n := int(w.probe.Load() * uint64(padInterval) / uint64(time.Second) / 8 / padSize)
	w.now = time.Now()
	for _, d := range w.sinks.load() {
		if d.sendPadding(max(n, 1)) {
			return
		}
	}
}
