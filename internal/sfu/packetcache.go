package sfu

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
)

// maxPacketSize bounds one RTP packet as read from a publisher.
const maxPacketSize = 1500

// Cache sizes, in slots of maxPacketSize (a slot is ≈ 1.6 KB, so a video
// layer's cache is ≈ 0.8 MB and an audio track's ≈ 100 KB). They bound
// what can be retransmitted (NACK) and replayed to a new subscriber
// (maxReplay): 512 video packets are ≈ 4 s at 1 Mbit/s and ≈ 1 s at
// 4 Mbit/s, more than a round trip; 64 Opus packets are 1.3 s. Each is
// twice its subscriber queue (queueVideo, queueAudio), so a queued packet
// is not overwritten before its writer gets to it unless the queue
// overflowed first.
const (
	cacheVideo = 512
	cacheAudio = 64
)

// slot holds one received RTP packet: the raw bytes and the header parsed in
// place, so forwarding and NACK answers need no allocation.
type slot struct {
	buf      [maxPacketSize]byte
	n        int        // bytes in buf
	hdr      rtp.Header // parsed header; Extensions/CSRC reuse their backing arrays
	hdrLen   int        // payload offset
	padLen   byte       // trailing padding bytes (when hdr.Padding)
	keyframe bool       // first packet of a keyframe
	level    byte       // the audio-level extension's byte (RFC 6464), when hasLevel
	hasLevel bool
	valid    bool
	idx      int32         // position in the cache
	gen      atomic.Uint32 // bumped each time the slot is reused (see pktCopy.copyFrom)
}

// payload returns the payload without padding.
func (s *slot) payload() []byte { return s.buf[s.hdrLen : s.n-int(s.padLen)] }

// packetCache is a fixed ring of slots for one published layer. Exactly one
// goroutine (the layer's reader) fills slots. Subscribers' writers copy
// queued packets out without the lock (checking the slot's generation) and
// replayed or NACKed ones under it (copyOut). A slot being filled is marked
// invalid and its generation bumped first, so nobody else uses it while
// the reader writes into it without the lock.
type packetCache struct {
	mu    sync.Mutex
	slots []slot
	next  int
	index []int32 // sequence number & mask -> slot, or -1
	mask  uint16
}

// newPacketCache makes a cache of n slots (n a power of two, <= 4096).
func newPacketCache(n int) *packetCache {
	c := &packetCache{slots: make([]slot, n), index: make([]int32, 4*n), mask: uint16(4*n - 1)}
	for i := range c.index {
		c.index[i] = -1
	}
	for i := range c.slots {
		c.slots[i].idx = int32(i)
	}
	return c
}

// reserve hands the reader the next slot to fill, evicting its old packet.
func (c *packetCache) reserve() *slot {
	c.mu.Lock()
	s := &c.slots[c.next]
	if s.valid {
		i := s.hdr.SequenceNumber & c.mask
		if c.index[i] == int32(c.next) {
			c.index[i] = -1
		}
		s.valid = false
	}
	s.gen.Add(1)
	c.next = (c.next + 1) % len(c.slots)
	c.mu.Unlock()
	return s
}

// commit publishes a filled slot (parsed header in s.hdr).
func (c *packetCache) commit(s *slot) {
	c.mu.Lock()
	s.valid = true
	c.index[s.hdr.SequenceNumber&c.mask] = s.idx
	c.mu.Unlock()
}

// copyOut copies the cached packet with sequence number seq into p under
// the cache lock, and reports whether it was still cached.
func (c *packetCache) copyOut(seq uint16, p *pktCopy) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.index[seq&c.mask]
	if i < 0 {
		return false
	}
	s := &c.slots[i]
	if !s.valid || s.hdr.SequenceNumber != seq {
		return false
	}
	return p.fill(s)
}

// parse fills s.hdr, s.hdrLen, s.padLen from s.buf[:s.n].
func (s *slot) parse() error {
	n, err := s.hdr.Unmarshal(s.buf[:s.n])
	if err != nil {
		return err
	}
	s.hdrLen = n
	s.padLen = 0
	if s.hdr.Padding && s.n > n {
		p := s.buf[s.n-1]
		if int(p) > s.n-n {
			return errBadPadding
		}
		s.padLen = p
	}
	return nil
}
