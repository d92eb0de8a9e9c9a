package synth

import (
	"testing"

	"github.com/pion/rtp/codecs"
)

func TestVP8(t *testing.T) {
	g, err := NewVP8(1_000_000, 30, 60)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	pay := &codecs.VP8Payloader{EnablePictureID: true}
	for i := 0; i < 60; i++ {
		f := g.Frame(i)
		total += len(f)
		key := f[0]&1 == 0
		if key != (i == 0) {
			t.Fatalf("frame %d: key %v", i, key)
		}
		if size := int(uint32(f[0])|uint32(f[1])<<8|uint32(f[2])<<16) >> 5; size > len(f) {
			t.Fatalf("frame %d: first partition %d of a %d-byte frame", i, size, len(f))
		}
		if key && (f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a || int(f[6])|int(f[7])<<8 != 640 || int(f[8])|int(f[9])<<8 != 360) {
			t.Fatalf("keyframe header % x", f[:10])
		}
		// Packetized, the first packet starts partition 0 (S=1, PID=0)
		// and the frame tag follows the descriptor, as an SFU checks it.
		pkts := pay.Payload(1200, f)
		var d codecs.VP8Packet
		if _, err := d.Unmarshal(pkts[0]); err != nil {
			t.Fatal(err)
		}
		if d.S != 1 || d.PID != 0 || (d.Payload[0]&1 == 0) != key {
			t.Fatalf("frame %d: first packet S=%d PID=%d tag %x", i, d.S, d.PID, d.Payload[0])
		}
	}
	// One keyframe interval of 2 s carries 2 s of the bitrate.
	if want := 2 * 1_000_000 / 8; total < want*99/100 || total > want {
		t.Fatalf("%d bytes in 2 s, want about %d", total, want)
	}
	if string(g.Frame(1)) == string(g.Frame(2)) {
		t.Fatal("frames repeat")
	}
	if _, err := NewVP8(100, 30, 0); err == nil {
		t.Fatal("a 100 bit/s stream accepted")
	}
}
