package sfu

import (
	"sync"
	"sync/atomic"
)

// Queue sizes: how many packets a subscriber's writer may fall behind its
// track before it drops to the next keyframe (video) or drops the oldest
// packet (audio). Both are half their cache sizes (cacheVideo and
// cacheAudio), so a queued slot is almost never reused before it is sent; when
// it is, the generation check in pktCopy.copyFrom catches it.
const (
	queueVideo = 256 // ~2 s at 1 Mbit/s
	queueAudio = 32  // 640 ms of 20 ms frames
	queueNACKs = 64
	queueBatch = 32 // entries a writer takes per lock
)

// qentry is a reference to a cached packet: the slot, and its generation
// when queued (a reused slot has another).
type qentry struct {
	l   *layer
	s   *slot
	gen uint32
	now int64 // when the packet was read (ns since the track's epoch)
}

// queue is one subscriber's bounded queue of packet references, filled by
// the track's reader(s) and drained by the subscriber's writer. NACKed
// sequence numbers ride in a second small ring so the writer alone sends.
type queue struct {
	mu    sync.Mutex
	ring  []qentry // len is a power of two
	head  int
	n     int
	nacks [queueNACKs]uint16
	nn    int
	// resync: the writer must drop what it holds and wait for a keyframe.
	// Set and cleared under mu; read without it by the writer between
	// packets (resyncPending), so the hot path takes no lock per packet.
	resync atomic.Bool
	// ready: something was queued since the last pop. Set and cleared
	// under mu; read without it, so a writer passes idle queues by
	// without taking their locks.
	ready atomic.Bool
	wake  chan struct{} // the writer's (capacity 1): "there is work"
}

func (q *queue) init(size int, wake chan struct{}) {
	q.ring = make([]qentry, size)
	q.wake = wake
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push adds e and returns how many packets were dropped to make room: a
// full video queue is emptied (the writer restarts on a keyframe), a full
// audio queue loses its oldest packet.
func (q *queue) push(e qentry, video bool) (dropped int) {
	q.mu.Lock()
	if q.n == len(q.ring) {
		if video {
			dropped = q.n
			q.n, q.head = 0, 0
			q.resync.Store(true)
		} else {
			dropped = 1
			q.head = (q.head + 1) & (len(q.ring) - 1)
			q.n--
		}
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = e
	q.n++
	q.markReady()
	q.mu.Unlock()
	q.signal()
	return dropped
}

// pushNACK queues a retransmission request; false when the ring is full.
func (q *queue) pushNACK(seq uint16) bool {
	q.mu.Lock()
	ok := q.nn < len(q.nacks)
	if ok {
		q.nacks[q.nn] = seq
		q.nn++
		q.markReady()
	}
	q.mu.Unlock()
	if ok {
		q.signal()
	}
	return ok
}

// requestResync makes the writer drop what is queued and start again from
// a keyframe (a new binding, a paused track).
func (q *queue) requestResync() {
	q.mu.Lock()
	q.resync.Store(true)
	q.markReady()
	q.n, q.head = 0, 0
	q.mu.Unlock()
	q.signal()
}

// markReady sets ready (under mu). It stores only on a change: a store is
// a locked instruction, a load is not, and a queue that has work stays
// ready for many pushes.
func (q *queue) markReady() {
	if !q.ready.Load() {
		q.ready.Store(true)
	}
}

// idle reports that nothing was queued since the last pop (a hint read
// without the lock: whatever is queued after it signals again).
func (q *queue) idle() bool { return !q.ready.Load() }

// resyncPending reports a resync requested since the last pop.
func (q *queue) resyncPending() bool { return q.resync.Load() }

// pop moves up to len(dst) entries and len(nacks) NACKs out, and reports
// (and clears) a pending resync.
func (q *queue) pop(dst []qentry, nacks []uint16) (n, nn int, resync bool) {
	q.mu.Lock()
	for n < len(dst) && q.n > 0 {
		dst[n] = q.ring[q.head]
		q.ring[q.head] = qentry{}
		q.head = (q.head + 1) & (len(q.ring) - 1)
		q.n--
		n++
	}
	nn = copy(nacks, q.nacks[:q.nn])
	q.nn = copy(q.nacks[:], q.nacks[nn:q.nn])
	resync = q.resync.Swap(false)
	if q.n == 0 && q.nn == 0 {
		q.ready.Store(false)
	}
	q.mu.Unlock()
	return n, nn, resync
}

// pktCopy is a packet copied out of a cache slot for sending, so the
// writer never holds the cache's lock (or races the reader) while it
// encrypts and writes. The payload starts rtxHeadroom bytes into buf, so
// that a retransmission on RTX can put the original sequence number in
// front of it without another copy.
type pktCopy struct {
	buf      [rtxHeadroom + maxPacketSize]byte
	n        int // payload bytes in buf (padding excluded)
	size     int // the packet's size as received
	seq      uint16
	ts       uint32
	marker   bool
	padding  bool
	padLen   byte
	keyframe bool
	level    byte // audio-level extension byte, when hasLevel
	hasLevel bool
	pt       uint8 // the publisher's payload type
	red      bool  // the packet is RED (red.go); set by forward
}

// rtxHeadroom is the RTX payload header: the original sequence number
// (RFC 4588).
const rtxHeadroom = 2

func (p *pktCopy) payload() []byte { return p.buf[rtxHeadroom : rtxHeadroom+p.n] }

// rtxPayload returns the payload of the RTX packet repairing p: the
// original sequence number osn, then p's payload.
func (p *pktCopy) rtxPayload(osn uint16) []byte {
	p.buf[0], p.buf[1] = byte(osn>>8), byte(osn)
	return p.buf[:rtxHeadroom+p.n]
}

// fill copies the packet in s; the caller makes sure s is not being
// written (cache lock, or the generation check in copyFrom). It reports
// false when the slot's lengths do not hold together, which only a slot
// overwritten during a copy without the lock can show (copyFrom then
// discards the copy anyway): slicing with them would panic.
func (p *pktCopy) fill(s *slot) bool {
	start, end := s.hdrLen, s.n-int(s.padLen)
	if start < 0 || start > end || end > len(s.buf) {
		return false
	}
	p.n = copy(p.buf[rtxHeadroom:], s.buf[start:end])
	p.size = s.n
	p.seq = s.hdr.SequenceNumber
	p.pt = s.hdr.PayloadType
	p.ts = s.hdr.Timestamp
	p.marker = s.hdr.Marker
	p.padding = s.hdr.Padding
	p.padLen = s.padLen
	p.keyframe = s.keyframe
	p.level, p.hasLevel = s.level, s.hasLevel
	return true
}

// copyFrom copies slot s without its cache's lock and reports whether s
// still held the packet queued at generation gen throughout (the reader
// bumps a slot's generation before it writes into it again).
func (p *pktCopy) copyFrom(s *slot, gen uint32) bool {
	if s.gen.Load() != gen {
		return false
	}
	ok := p.fill(s)
	return ok && s.gen.Load() == gen
}
