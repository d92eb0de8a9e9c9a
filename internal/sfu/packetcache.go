package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// maxPacketSize bounds one RTP packet as read from a publisher.
const maxPacketSize = 1500

// Cache sizes, in slots of maxPacketSize (a slot is ≈ 1.6 KB). They bound
// what can be retransmitted (NACK) and replayed to a new subscriber
// (maxReplay). A video layer's cache starts at cacheMinVideo slots (a full
// subscriber queue, queueVideo, and more than maxReplay, so replays and
// queued packets are as with a fixed cache) and grows a chunk at a time,
// up to cacheVideo (≈ 0.8 MB), while the packet it would evict arrived
// less than cacheKeep ago: a 500 kbit/s camera or a simulcast low layer
// keeps 256 slots (≈ 0.4 MB), 1 Mbit/s and more 512 (≈ 4 s at 1 Mbit/s,
// ≈ 1 s at 4 Mbit/s). An audio track's cache is fixed: 64 Opus packets
// are 1.3 s, twice queueAudio.
const (
	cacheChunk    = 64
	cacheMinVideo = queueVideo
	cacheVideo    = 512
	cacheAudio    = 64
	cacheKeep     = 4 * time.Second
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
	at       int64         // arrival (the track's clock, ns), set before commit
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
	mu     sync.Mutex
	chunks [][]slot // cacheChunk slots each (fewer in a smaller fixed cache); appended, never moved
	n      int      // slots in the ring
	max    int
	keep   int64 // grow while the packet to evict arrived less than keep ago (ns); 0: fixed size
	newest int64 // arrival of the last packet committed
	next   int
	index  []int32 // sequence number & mask -> slot, or -1
	mask   uint16
}

// newPacketCache makes a cache of n slots (n a power of two, <= 4096).
func newPacketCache(n int) *packetCache { return newGrowingCache(n, n, 0) }

// newGrowingCache makes a cache of minimum slots that grows by cacheChunk
// up to maximum (a power of two, <= 4096) while the packet it would evict
// arrived less than keep ago.
func newGrowingCache(minimum, maximum int, keep time.Duration) *packetCache {
	c := &packetCache{max: maximum, keep: int64(keep), index: make([]int32, 4*maximum), mask: uint16(4*maximum - 1)}
	for i := range c.index {
		c.index[i] = -1
	}
	for c.n < minimum {
		c.grow()
	}
	return c
}

// grow adds a chunk of slots at the ring's end (under mu, or before use).
func (c *packetCache) grow() {
	chunk := make([]slot, min(cacheChunk, c.max-c.n))
	for i := range chunk {
		chunk[i].idx = int32(c.n + i)
	}
	c.chunks = append(c.chunks, chunk)
	c.n += len(chunk)
}

// slot returns slot i of the ring.
func (c *packetCache) slot(i int) *slot { return &c.chunks[i/cacheChunk][i%cacheChunk] }

// reserve hands the reader the next slot to fill, evicting its old packet.
func (c *packetCache) reserve() *slot {
	c.mu.Lock()
	s := c.slot(c.next)
	if s.valid {
		i := s.hdr.SequenceNumber & c.mask
		if c.index[i] == int32(c.next) {
			c.index[i] = -1
		}
		s.valid = false
	}
	s.gen.Add(1)
	if c.next++; c.next == c.n {
		// Wrapping: slot 0 holds the oldest packet. Keep it and add
		// slots instead while it arrived less than keep ago.
		c.next = 0
		if old := c.slot(0); c.n < c.max && old.valid && c.newest-old.at < c.keep {
			c.next = c.n
			c.grow()
		}
	}
	c.mu.Unlock()
	return s
}

// commit publishes a filled slot (parsed header in s.hdr).
func (c *packetCache) commit(s *slot) {
	c.mu.Lock()
	s.valid = true
	c.newest = s.at
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
	s := c.slot(int(i))
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
