package sfu

import (
	"slices"
	"strings"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// The SFU asks publishers for the video packets it misses itself, instead
// of with pion's NACK generator interceptor: that one sits on the media
// stream only and never sees the packets a publisher resends on its RTX
// stream (pion hands those to the track's reader, repaired, past the
// media stream's interceptors), so it asked again for each of them every
// 100 ms until 512 newer packets had gone by — a publisher (Chromium)
// answered each request again once a round trip had passed, and counted
// those retransmissions against its own encoder's budget. The tracker
// below is fed every packet the layer's reader gets, media and repaired
// alike.
const (
	// nackWindow is how many sequence numbers behind the newest a layer
	// keeps asking for (a power of two): as many as its packet cache
	// holds.
	nackWindow = 1024
	// nackRetry is the least time between two requests for one packet;
	// a publisher ignores a request repeated within a round trip of its
	// last retransmission, so a shorter round trip gets the packet again.
	nackRetry = 100 * time.Millisecond
	// nackTries bounds the requests for one packet: about a second, past
	// which the subscribers' decoders have given up on it anyway.
	nackTries = 10
)

// nackSender is a Source that takes NACKs: a WebRTC publisher.
type nackSender interface {
	SendNACK(ssrc uint32, seqs []uint16)
}

// SendNACK implements nackSender: a generic NACK (RFC 4585) to the publisher.
func (p *Participant) SendNACK(ssrc uint32, seqs []uint16) {
	pkt := &rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}
	if err := p.pc.WriteRTCP([]rtcp.Packet{pkt}); err != nil {
		p.log.Debug("nack", "ssrc", ssrc, "err", err)
	}
}

// takesNACK reports whether a published track's codec negotiated generic NACK.
func takesNACK(c webrtc.RTPCodecParameters) bool {
	return slices.ContainsFunc(c.RTCPFeedback, func(f webrtc.RTCPFeedback) bool {
		return strings.EqualFold(f.Type, webrtc.TypeRTCPFBNACK) && f.Parameter == ""
	})
}

type nackEntry struct {
	seq     uint16
	missing bool
	tries   uint8
	last    int64 // when last asked for (the track's clock)
}

// nackTracker finds the packets a layer misses and says when to ask for
// each. It is owned by the layer's reader goroutine and never allocates.
type nackTracker struct {
	started bool
	top     uint16 // newest sequence number seen
	missing int    // entries marked missing
	low     uint16 // no entry older than this is missing (while missing > 0): where a scan starts
	due     int64  // when an entry is next to be asked for again; 0: now
	win     [nackWindow]nackEntry
	out     [nackWindow]uint16 // scratch for the sequence numbers to ask for
}

// receive records packet seq, arrived at now, and returns the sequence
// numbers to ask for now (valid until the next call), nil for none.
func (t *nackTracker) receive(seq uint16, now int64) []uint16 {
	if !t.started {
		t.reset(seq)
		return nil
	}
	switch d := int16(seq - t.top); {
	case d >= nackWindow || d < -4*nackWindow:
		t.reset(seq) // a jump (a publisher's restart): start again
		return nil
	case d > 0:
		for s := t.top + 1; s != seq; s++ {
			if t.missing == 0 {
				t.low = s
			}
			t.set(nackEntry{seq: s, missing: true})
			t.due = 0
		}
		t.set(nackEntry{seq: seq})
		t.top = seq
	default:
		// late, or repaired: no longer missing
		if e := &t.win[seq&(nackWindow-1)]; e.missing && e.seq == seq {
			e.missing = false
			t.missing--
		}
	}
	if t.missing == 0 || now < t.due {
		return nil
	}
	n := 0
	t.due = now + int64(nackRetry)
	// Oldest first, from the oldest entry that may be missing: the
	// window's start only when that is older.
	start := t.top - nackWindow + 1
	if t.low-start < nackWindow {
		start = t.low
	}
	low, seen := t.top, false
	for s := start; s != t.top; s++ {
		e := &t.win[s&(nackWindow-1)]
		if !e.missing || e.seq != s {
			continue
		}
		if e.tries >= nackTries {
			e.missing = false // given up
			t.missing--
			continue
		}
		if !seen {
			low, seen = s, true
		}
		if e.tries > 0 && now-e.last < int64(nackRetry) {
			t.due = min(t.due, e.last+int64(nackRetry))
			continue
		}
		e.tries++
		e.last = now
		t.out[n] = s
		n++
	}
	t.low = low
	if n == 0 {
		return nil
	}
	return t.out[:n]
}

// set overwrites the entry of e.seq, forgetting the one it replaces.
func (t *nackTracker) set(e nackEntry) {
	old := &t.win[e.seq&(nackWindow-1)]
	if old.missing {
		t.missing--
	}
	*old = e
	if e.missing {
		t.missing++
	}
}

func (t *nackTracker) reset(seq uint16) {
	t.win = [nackWindow]nackEntry{}
	t.missing, t.due = 0, 0
	t.started, t.top, t.low = true, seq, seq
	t.win[seq&(nackWindow-1)] = nackEntry{seq: seq}
}
