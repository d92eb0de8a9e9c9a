package fanout

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/bench/synth"
)

func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and three pion clients")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Run(ctx, Options{Viewers: 2, Warmup: time.Second, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 2 || res.Expected == 0 || res.PublisherPackets == 0 {
		t.Fatalf("result: %+v", res)
	}
	if res.LatencyP50 <= 0 || res.FirstPacketP50 <= 0 || res.ServerRSSMB <= 0 {
		t.Fatalf("missing figures: %+v", res)
	}
	if !strings.Contains(res.Table(), "packet loss") {
		t.Fatal("table")
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	if _, err := Run(context.Background(), Options{URL: "http://192.0.2.1:8080"}); err == nil {
		t.Fatal("non-loopback URL accepted")
	}
}

func TestIVF(t *testing.T) {
	// A small IVF file of synthetic frames: 32-byte file header, then a
	// 12-byte header before each frame.
	g, err := synth.NewVP8(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 32)
	copy(hdr, "DKIF")
	binary.LittleEndian.PutUint16(hdr[6:], 32)
	copy(hdr[8:], "VP80")
	binary.LittleEndian.PutUint16(hdr[12:], 640)
	binary.LittleEndian.PutUint16(hdr[14:], 360)
	binary.LittleEndian.PutUint32(hdr[16:], 30)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint32(hdr[24:], 3)
	ivf := hdr
	for i := 0; i < 3; i++ {
		f := g.Frame(i)
		fh := make([]byte, 12)
		binary.LittleEndian.PutUint32(fh, uint32(len(f)))
		binary.LittleEndian.PutUint64(fh[4:], uint64(i))
		ivf = append(append(ivf, fh...), f...)
	}
	src, err := videoSource(ivf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(src(4)) != string(g.Frame(1)) {
		t.Fatal("the IVF frames do not loop")
	}
	if _, err := readIVF([]byte("junk")); err == nil {
		t.Fatal("junk accepted")
	}
}
