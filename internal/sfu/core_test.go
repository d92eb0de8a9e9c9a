package sfu

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// memSource is an in-memory Source: the test writes its packets.
type memSource struct {
	id   string
	plis atomic.Int64
}

func (m *memSource) SourceID() string       { return m.id }
func (m *memSource) RequestKeyframe(uint32) { m.plis.Add(1) }

// memPacket is what a memSink saw of one packet.
type memPacket struct {
	seq     uint16
	ts      uint32
	ssrc    uint32
	pt      uint8
	counter uint32 // the source's packet number, from the payload
	key     bool
}

// memSink is an in-memory Sink that records packets; block, when set,
// makes its first write wait until it is closed.
type memSink struct {
	mu      sync.Mutex
	got     []memPacket
	changed chan struct{} // closed and replaced on every packet

	block   chan struct{}
	blocked chan struct{} // closed when the blocking write started
	inWrite atomic.Bool
	once    sync.Once
}

func newMemSink() *memSink { return &memSink{changed: make(chan struct{})} }

func (m *memSink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if m.block != nil {
		m.once.Do(func() {
			m.inWrite.Store(true)
			close(m.blocked)
			<-m.block
			m.inWrite.Store(false)
		})
	}
	p := memPacket{seq: h.SequenceNumber, ts: h.Timestamp, ssrc: h.SSRC, pt: h.PayloadType,
		counter: binary.BigEndian.Uint32(payload[3:7]), key: isKeyframeStart(codecVP8, payload)}
	m.mu.Lock()
	m.got = append(m.got, p)
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	return 12 + len(payload), nil
}

func (m *memSink) packets() []memPacket {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]memPacket(nil), m.got...)
}

// waitFor waits until the sink holds n packets (or ctx ends).
func (m *memSink) waitFor(ctx context.Context, t testing.TB, n int, what string) {
	t.Helper()
	for {
		m.mu.Lock()
		have, ch := len(m.got), m.changed
		m.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %d of %d packets", what, have, n)
		case <-ch:
		}
	}
}

// vp8Packet is RTP with a VP8 payload descriptor (keyframe or not) and the
// packet's number in the payload.
func vp8Packet(seq uint16, ts uint32, counter uint32, key bool) []byte {
	payload := make([]byte, 200)
	payload[0] = 0x10 // S=1, partition 0
	if key {
		payload[1], payload[2] = 0x00, 0x9d // P=0: keyframe
	} else {
		payload[1] = 0x01
	}
	binary.BigEndian.PutUint32(payload[3:7], counter)
	b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 1, Marker: true}, Payload: payload}).Marshal()
	return b
}

var vp8Codec = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}

// memStream publishes a VP8 track from an in-memory source.
type memStream struct {
	src     *memSource
	pub     *Publication
	seq     uint16
	ts      uint32
	counter uint32
}

func newMemStream(t testing.TB, s *SFU, room string) *memStream {
	src := &memSource{id: "cam"}
	pub, err := s.Publish(Streams, room, src, TrackSpec{TrackID: "video", StreamID: "cam", Codec: vp8Codec})
	if err != nil {
		t.Fatal(err)
	}
	return &memStream{src: src, pub: pub, seq: 1000, ts: 5000}
}

func (m *memStream) send(t testing.TB, key bool) uint32 {
	m.counter++
	if err := m.pub.WriteRTP("", vp8Packet(m.seq, m.ts, m.counter, key)); err != nil {
		t.Fatal(err)
	}
	m.seq++
	m.ts += 3000
	return m.counter
}

func checkContinuous(t *testing.T, name string, got []memPacket) {
	t.Helper()
	for i := 1; i < len(got); i++ {
		if got[i].seq != got[i-1].seq+1 {
			t.Fatalf("%s: packet %d has seq %d after %d", name, i, got[i].seq, got[i-1].seq)
		}
		if int32(got[i].ts-got[i-1].ts) <= 0 {
			t.Fatalf("%s: timestamp went back at packet %d", name, i)
		}
	}
}

// An in-memory source reaches three in-memory sinks through the core, no
// pion: every payload, in order, starting on the cached keyframe, and the
// subscriptions end with the track.
func TestMemorySourceToThreeSinks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newTestSFU(t)
	ms := newMemStream(t, s, "mem")
	// A keyframe and a few more before anyone subscribes.
	firstKey := ms.send(t, true)
	for range 4 {
		ms.send(t, false)
	}
	room, _ := s.LookupRoom(Streams, "mem")
	sinks := make([]*memSink, 3)
	subs := make([]*Subscription, 3)
	for i := range sinks {
		sinks[i] = newMemSink()
		sub, err := room.Subscribe(ms.pub.ID(), sinks[i], SinkOptions{SSRC: uint32(100 + i), PayloadType: 100})
		if err != nil {
			t.Fatal(err)
		}
		subs[i] = sub
	}
	const more = 200
	for range more {
		ms.send(t, false)
	}
	for i, sk := range sinks {
		// 5 replayed from the keyframe (the packet that triggered the
		// replay included) plus the rest.
		sk.waitFor(ctx, t, 5+more, "sink")
		got := sk.packets()
		if !got[0].key || got[0].counter != firstKey {
			t.Fatalf("sink %d starts with packet %d (key %v), want the cached keyframe %d", i, got[0].counter, got[0].key, firstKey)
		}
		for j, p := range got {
			if p.counter != firstKey+uint32(j) {
				t.Fatalf("sink %d: packet %d carries %d, want %d", i, j, p.counter, firstKey+uint32(j))
			}
			if p.ssrc != uint32(100+i) || p.pt != 100 {
				t.Fatalf("sink %d: ssrc %d pt %d", i, p.ssrc, p.pt)
			}
		}
		checkContinuous(t, "sink", got)
	}
	ms.pub.End()
	for i, sub := range subs {
		select {
		case <-sub.Done():
		case <-ctx.Done():
			t.Fatalf("subscription %d did not end with its track", i)
		}
	}
	if _, ok := s.LookupRoom(Streams, "mem"); ok {
		t.Fatal("the room outlived its last track")
	}
	if st := s.Stats(); st.Forwarded < 3*(more+4) || st.Received != 5+more {
		t.Fatalf("stats: %+v", st)
	}
}

// One sink whose writer blocks among 49 healthy ones: every healthy sink
// gets every packet in order while the blocked one is still blocked; the
// blocked one counts its drops and resumes on a keyframe.
func TestBlockedSinkDoesNotDelayOthers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := newTestSFU(t)
	ms := newMemStream(t, s, "slow")
	room, _ := s.LookupRoom(Streams, "slow")

	stuck := newMemSink()
	stuck.block, stuck.blocked = make(chan struct{}), make(chan struct{})
	stuckSub, err := room.Subscribe(ms.pub.ID(), stuck, SinkOptions{SSRC: 1})
	if err != nil {
		t.Fatal(err)
	}
	healthy := make([]*memSink, 49)
	for i := range healthy {
		healthy[i] = newMemSink()
		if _, err := room.Subscribe(ms.pub.ID(), healthy[i], SinkOptions{SSRC: uint32(10 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Rounds of 100 packets; the next round goes once every healthy sink
	// has the last one, so their queues never overflow however slow this
	// machine is, while the stuck sink's queue (256) overflows by round 4.
	ms.send(t, true)
	sent := 1
	for round := 0; round < 8; round++ {
		for range 100 {
			ms.send(t, false)
			sent++
		}
		if round == 0 {
			select {
			case <-stuck.blocked:
			case <-ctx.Done():
				t.Fatal("the stuck sink never got a packet")
			}
		}
		for _, h := range healthy {
			h.waitFor(ctx, t, sent, "healthy sink")
		}
	}
	if !stuck.inWrite.Load() {
		t.Fatal("the stuck sink is no longer blocked")
	}
	for i, h := range healthy {
		got := h.packets()
		if len(got) != sent || got[0].counter != 1 || got[sent-1].counter != uint32(sent) {
			t.Fatalf("healthy sink %d: %d packets", i, len(got))
		}
		checkContinuous(t, "healthy sink", got)
	}
	drops := stuckSub.Stats().Drops
	if drops == 0 {
		t.Fatal("the stuck sink counts no drops")
	}
	if st := s.Stats(); st.SinkDrops != drops {
		t.Fatalf("SFU stats count %d sink drops, the sink %d", st.SinkDrops, drops)
	}
	plis := ms.src.plis.Load()
	if plis == 0 {
		t.Fatal("falling behind asked the source for no keyframe")
	}

	// Unblock: the stuck sink resumes on the next keyframe, continuing its
	// sequence numbers.
	close(stuck.block)
	for range 10 {
		ms.send(t, false)
	}
	key := ms.send(t, true)
	for range 10 {
		ms.send(t, false)
	}
	stuck.waitFor(ctx, t, 12, "resumed sink")
	got := stuck.packets()
	if got[0].counter != 1 || !got[1].key || got[1].counter != key {
		t.Fatalf("after the block the sink got packet %d (key %v), want keyframe %d", got[1].counter, got[1].key, key)
	}
	checkContinuous(t, "resumed sink", got)
}

// TestSameTrackFromAnotherSource: a track published by another source
// under the same ID (a member that moved here from another node, while
// its relay from there still runs) replaces the old one: its
// subscriptions end, and the room lists the new one alone.
func TestSameTrackFromAnotherSource(t *testing.T) {
	s := newTestSFU(t)
	relayed := &memSource{id: "bob"}
	if _, err := s.Publish(Streams, "moved", relayed, TrackSpec{TrackID: "video", StreamID: "cam", Codec: vp8Codec}); err != nil {
		t.Fatal(err)
	}
	room, _ := s.LookupRoom(Streams, "moved")
	old := room.Tracks()[0]
	sub, err := room.Subscribe(old.ID, newMemSink(), SinkOptions{SSRC: 1})
	if err != nil {
		t.Fatal(err)
	}
	local := &memSource{id: "bob"}
	if _, err := s.Publish(Streams, "moved", local, TrackSpec{TrackID: "video", StreamID: "cam", Codec: vp8Codec}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced track's subscription did not end")
	}
	if tracks := room.Tracks(); len(tracks) != 1 || tracks[0].ID != old.ID {
		t.Fatalf("tracks %+v, want the one of that ID", tracks)
	}
}

// A keyframe's first packet that comes after the rest of it (lost on the
// publisher's link and repaired a round trip later) still restarts a
// subscriber that waits for a keyframe (after a drop, or a layer switch)
// with the whole keyframe: the packets it dropped while waiting are sent
// from the cache right after it, in order. Before, they were never sent,
// a NACK for them could not be answered, and the picture stayed frozen
// until the next keyframe.
func TestLateKeyframeStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newTestSFU(t)
	ms := newMemStream(t, s, "late")
	ms.send(t, true)
	for range 5 {
		ms.send(t, false)
	}
	room, _ := s.LookupRoom(Streams, "late")
	sink := newMemSink()
	sub, err := room.Subscribe(ms.pub.ID(), sink, SinkOptions{SSRC: 7, PayloadType: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ms.send(t, false)                                // the subscriber starts on the cached keyframe
	sink.waitFor(ctx, t, 7, "sink, before the drop") // replayed from it up to this packet
	sub.d.q.requestResync()                          // as a full queue does: wait for the next keyframe
	// The next keyframe is packets 8-11 (seq 1007-1010); packet 8 comes last.
	for c := uint32(9); c <= 11; c++ {
		if err := ms.pub.WriteRTP("", vp8Packet(1007+uint16(c-8), 20000, c, false)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ms.pub.WriteRTP("", vp8Packet(1007, 20000, 8, true)); err != nil {
		t.Fatal(err)
	}
	ms.seq, ms.ts, ms.counter = 1011, 23000, 11
	for range 10 {
		ms.send(t, false)
	}
	sink.waitFor(ctx, t, 21, "sink, after the late keyframe start")
	got := sink.packets()
	for j, p := range got {
		if p.counter != uint32(j+1) {
			t.Fatalf("packet %d carries %d, want %d (got %+v)", j, p.counter, j+1, got)
		}
	}
	if !got[7].key {
		t.Fatal("the sink did not restart on the keyframe")
	}
	checkContinuousSeq(t, got)
}

// checkContinuousSeq: sequence numbers without a gap (timestamps may
// repeat within a frame).
func checkContinuousSeq(t *testing.T, got []memPacket) {
	t.Helper()
	for i := 1; i < len(got); i++ {
		if got[i].seq != got[i-1].seq+1 {
			t.Fatalf("packet %d has seq %d after %d", i, got[i].seq, got[i-1].seq)
		}
	}
}
