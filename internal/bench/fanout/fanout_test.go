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

// Stalled viewers (ICE-TCP through a proxy that stops reading) make the
// server drop their packets, while the healthy viewers lose nothing.
func TestRunStalled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and seven pion clients")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// 4 Mbit/s, so the stalled connections' socket buffers fill soon; the
	// window starts once the server counted a drop (waitDrops).
	res, err := Run(ctx, Options{Viewers: 6, Stalled: 34, Warmup: time.Second, Duration: 2 * time.Second,
		VideoBitrate: 4_000_000, waitDrops: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res.Table())
	h, s := res.HealthyGroup, res.StalledGroup
	if res.StalledViewers != 2 || h == nil || s == nil || h.Viewers != 4 || s.Viewers != 2 {
		t.Fatalf("groups: %+v", res)
	}
	if h.Connected != 4 || s.Connected != 2 {
		t.Fatalf("not every viewer received video: healthy %+v, stalled %+v", h, s)
	}
	if h.Expected == 0 || h.Lost != 0 {
		t.Fatalf("the healthy viewers lost packets: %+v", h)
	}
	if res.SinkDropsError != "" || res.SinkDrops == 0 || res.SinkDropsAfter <= res.SinkDropsBefore {
		t.Fatalf("no server sink drops over the window: %+v", res)
	}
	if s.ReceivedPct >= h.ReceivedPct {
		t.Fatalf("the stalled viewers received %.1f %% of the published packets, the healthy ones %.1f %%", s.ReceivedPct, h.ReceivedPct)
	}
	if !strings.Contains(res.Table(), "stalled viewers") {
		t.Fatal("table")
	}
}

func TestStalledCount(t *testing.T) {
	for _, c := range []struct{ viewers, pct, want int }{{300, 10, 30}, {6, 34, 2}, {10, 0, 0}, {3, 1, 1}, {5, 100, 5}} {
		if got := (Options{Viewers: c.viewers, Stalled: c.pct}).StalledCount(); got != c.want {
			t.Errorf("%d viewers, %d %%: %d stalled, want %d", c.viewers, c.pct, got, c.want)
		}
	}
}
