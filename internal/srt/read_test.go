package srt

import (
	"testing"
	"time"
)

// TestReadQueue: a full queue drops and counts; after dropping video it
// drops video up to the next keyframe, while audio still goes in.
func TestReadQueue(t *testing.T) {
	s := &Server{}
	q := &readQueue{ch: make(chan unit, 2), s: s}
	idr := [][]byte{{0x65, 1}}
	p := [][]byte{{0x41, 1}}
	q.push(unit{video: true, data: idr})
	q.push(unit{video: true, data: p})
	q.push(unit{video: true, data: p}) // full: dropped
	<-q.ch
	<-q.ch
	q.push(unit{video: true, data: p}) // not a keyframe: dropped
	q.push(unit{data: [][]byte{{1}}})  // audio goes in
	q.push(unit{video: true, data: idr})
	if n := s.drops.Load(); n != 2 {
		t.Fatalf("%d drops, want 2", n)
	}
	if u := <-q.ch; u.video {
		t.Fatal("video before the audio")
	}
	if u := <-q.ch; !u.video || u.data[0][0] != 0x65 {
		t.Fatal("the keyframe did not go in")
	}
}

// TestVideoParams: nothing goes out before an IDR with known SPS and
// PPS; an IDR without them gets them.
func TestVideoParams(t *testing.T) {
	var v videoSink
	sps, pps, idr, p := []byte{0x67, 1}, []byte{0x68, 2}, []byte{0x65, 3}, []byte{0x41, 4}
	if v.params([][]byte{idr}) != nil || v.params([][]byte{p}) != nil {
		t.Fatal("an access unit went out before the parameter sets")
	}
	if au := v.params([][]byte{sps, pps, idr}); len(au) != 3 {
		t.Fatalf("%d NAL units", len(au))
	}
	if au := v.params([][]byte{p}); len(au) != 1 {
		t.Fatalf("%d NAL units", len(au))
	}
	if au := v.params([][]byte{idr}); len(au) != 3 || au[0][0] != 0x67 || au[1][0] != 0x68 {
		t.Fatalf("IDR not completed: %x", au)
	}
}

// TestClock: RTP timestamps become 90 kHz PTS from the first packet's
// arrival, across the 32-bit wrap.
func TestClock(t *testing.T) {
	c := clock{start: time.Now(), rate: 48000}
	base := c.pts(0xfffffc00)
	if got := c.pts(0xfffffc00+960) - base; got != 1800 {
		t.Fatalf("20 ms = %d ticks, want 1800", got)
	}
	if got := c.pts(0x00000100+960) - base; got != (0x500+960)*90000/48000 {
		t.Fatalf("after the wrap: %d", got)
	}
}
