package ingest

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// packets collects what an h264 packetizer writes.
func packetizer(out *[][]byte) *h264 {
	h := &h264{rtpWriter: rtpWriter{pt: PTH264, ssrc: 7}}
	h.write = func(p []byte) error {
		*out = append(*out, bytes.Clone(p))
		return nil
	}
	return h
}

// depacketize rebuilds the NAL units of one access unit (RFC 6184).
func depacketize(t *testing.T, pkts [][]byte) [][]byte {
	t.Helper()
	var nalus [][]byte
	var fu []byte
	for i, p := range pkts {
		if p[0] != 0x80 || p[1]&0x7f != PTH264 || binary.BigEndian.Uint32(p[8:]) != 7 {
			t.Fatalf("packet %d: bad header % x", i, p[:12])
		}
		if marker := p[1]&0x80 != 0; marker != (i == len(pkts)-1) {
			t.Fatalf("packet %d: marker %v", i, marker)
		}
		if len(p) > rtpHeaderLen+maxRTPPayload {
			t.Fatalf("packet %d: %d bytes", i, len(p))
		}
		pl := p[rtpHeaderLen:]
		if pl[0]&0x1f != naluFUA {
			nalus = append(nalus, pl)
			continue
		}
		if pl[1]&0x80 != 0 {
			fu = []byte{pl[0]&0xe0 | pl[1]&0x1f}
		}
		fu = append(fu, pl[2:]...)
		if pl[1]&0x40 != 0 {
			nalus = append(nalus, fu)
			fu = nil
		}
	}
	return nalus
}

func TestH264Packetizer(t *testing.T) {
	var out [][]byte
	h := packetizer(&out)
	sps, pps := []byte{0x67, 0x64, 0x00, 0x1f, 1}, []byte{0x68, 2}
	h.setParams(sps, pps)
	big := bytes.Repeat([]byte{0xab}, 5000)
	big[0] = 0x65 // IDR
	if err := h.writeAU([][]byte{{0x09, 0xf0}, big, {0x41, 3}}, time.Second); err != nil {
		t.Fatal(err)
	}
	got := depacketize(t, out)
	want := [][]byte{sps, pps, big, {0x41, 3}}
	if len(got) != len(want) {
		t.Fatalf("%d NAL units, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("NAL unit %d differs", i)
		}
	}
	if ts := binary.BigEndian.Uint32(out[0][4:]); ts != 90000 {
		t.Fatalf("timestamp %d, want 90000", ts)
	}
	h.write = func([]byte) error { return nil }
	au := [][]byte{big, {0x41, 1, 2, 3}}
	if n := testing.AllocsPerRun(100, func() { _ = h.writeAU(au, time.Second) }); n != 0 {
		t.Fatalf("%v allocations per access unit", n)
	}
}

func FuzzH264Packetizer(f *testing.F) {
	f.Add([]byte{0x65, 1, 2, 3}, uint16(3000))
	f.Add([]byte{0x7c, 0x85}, uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		// Split b into NAL units at cut-sized steps.
		var au [][]byte
		step := int(cut)%4000 + 1
		for len(b) > 0 {
			k := min(step, len(b))
			au = append(au, b[:k])
			b = b[k:]
		}
		var out [][]byte
		h := packetizer(&out)
		if err := h.writeAU(au, time.Duration(cut)*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		for _, p := range out {
			if len(p) > rtpHeaderLen+maxRTPPayload || len(p) <= rtpHeaderLen {
				t.Fatalf("packet of %d bytes", len(p))
			}
		}
	})
}

// TestTicksDoNotOverflow: days into a stream, a presentation time still
// becomes its RTP timestamp (modulo 2^32).
func TestTicksDoNotOverflow(t *testing.T) {
	for _, c := range []struct {
		pts   time.Duration
		clock int64
		want  uint32
	}{
		{time.Second, 90000, 90000},
		{72 * time.Hour, 90000, uint32(72 * 3600 * 90000 % (1 << 32))},
		{72*time.Hour + 500*time.Millisecond, 48000, uint32((72*3600*48000 + 24000) % (1 << 32))},
		{30 * 24 * time.Hour, 8000, uint32(30 * 24 * 3600 * 8000 % (1 << 32))},
	} {
		if got := ticks(c.pts, c.clock); got != c.want {
			t.Errorf("ticks(%v, %d) = %d, want %d", c.pts, c.clock, got, c.want)
		}
	}
}

// TestH265Packetizer: a large IRAP picture without parameter sets goes
// out as VPS, SPS, PPS and fragmentation units that join back into it.
func TestH265Packetizer(t *testing.T) {
	var out [][]byte
	h := &h265{rtpWriter: rtpWriter{pt: PTH265, ssrc: 7}}
	h.write = func(p []byte) error {
		out = append(out, bytes.Clone(p))
		return nil
	}
	vps, sps, pps := []byte{32 << 1, 1, 0xc}, []byte{33 << 1, 1, 1}, []byte{34 << 1, 1, 2}
	h.setParams(vps, sps, pps)
	big := bytes.Repeat([]byte{0xab}, 5000)
	big[0], big[1] = 19<<1, 1 // IDR_W_RADL
	if err := h.writeAU([][]byte{{35 << 1, 1, 0x50}, big}, time.Second); err != nil {
		t.Fatal(err)
	}
	var nalus [][]byte
	var fu []byte
	for i, p := range out {
		if marker := p[1]&0x80 != 0; marker != (i == len(out)-1) {
			t.Fatalf("packet %d: marker %v", i, marker)
		}
		if len(p) > rtpHeaderLen+maxRTPPayload {
			t.Fatalf("packet %d: %d bytes", i, len(p))
		}
		pl := p[rtpHeaderLen:]
		if pl[0]>>1&0x3f != h265FU {
			nalus = append(nalus, pl)
			continue
		}
		if pl[2]&0x80 != 0 {
			fu = []byte{pl[0]&0x81 | (pl[2]&0x3f)<<1, pl[1]}
		}
		fu = append(fu, pl[3:]...)
		if pl[2]&0x40 != 0 {
			nalus = append(nalus, fu)
		}
	}
	want := [][]byte{vps, sps, pps, big}
	if len(nalus) != len(want) {
		t.Fatalf("%d NAL units, want %d", len(nalus), len(want))
	}
	for i := range want {
		if !bytes.Equal(nalus[i], want[i]) {
			t.Fatalf("NAL unit %d differs", i)
		}
	}
	h.write = func([]byte) error { return nil }
	au := [][]byte{big, {1 << 1, 1, 2, 3}}
	if n := testing.AllocsPerRun(100, func() { _ = h.writeAU(au, time.Second) }); n != 0 {
		t.Fatalf("%v allocations per access unit", n)
	}
}

func FuzzH265Packetizer(f *testing.F) {
	f.Add([]byte{19 << 1, 1, 2, 3}, uint16(3000))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		var au [][]byte
		step := int(cut)%4000 + 1
		for len(b) > 0 {
			k := min(step, len(b))
			au = append(au, b[:k])
			b = b[k:]
		}
		h := &h265{rtpWriter: rtpWriter{pt: PTH265, ssrc: 7}}
		h.write = func(p []byte) error {
			if len(p) > rtpHeaderLen+maxRTPPayload || len(p) <= rtpHeaderLen {
				t.Fatalf("packet of %d bytes", len(p))
			}
			return nil
		}
		if err := h.writeAU(au, time.Duration(cut)*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkPacketizers: one access unit of a 5000-byte picture (five
// fragments) and a small unit, into RTP packets (written nowhere).
func BenchmarkPacketizers(b *testing.B) {
	big := bytes.Repeat([]byte{0xab}, 5000)
	b.Run("H264", func(b *testing.B) {
		h := &h264{rtpWriter: rtpWriter{pt: PTH264, ssrc: 7, write: func([]byte) error { return nil }}}
		big := append([]byte{0x41}, big...)
		au := [][]byte{big, {0x06, 1, 2, 3}}
		b.ReportAllocs()
		for b.Loop() {
			_ = h.writeAU(au, time.Second)
		}
	})
	b.Run("H265", func(b *testing.B) {
		h := &h265{rtpWriter: rtpWriter{pt: PTH265, ssrc: 7, write: func([]byte) error { return nil }}}
		big := append([]byte{1 << 1, 1}, big...)
		au := [][]byte{big, {39 << 1, 1, 2, 3}}
		b.ReportAllocs()
		for b.Loop() {
			_ = h.writeAU(au, time.Second)
		}
	})
}
