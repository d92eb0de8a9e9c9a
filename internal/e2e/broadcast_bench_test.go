package e2e

import (
	"os"
	"slices"
	"testing"
	"time"
)

// glassJS starts reading the publisher's test pattern on the viewer page:
// for each presented frame, the clock in the blocks vs Date.now().
const glassJS = `(() => {
  const v = document.querySelector('#video');
  const cv = document.createElement('canvas');
  const ctx = cv.getContext('2d', { willReadFrequently: true });
  window.glass = { samples: [], bad: 0 };
  const step = (now, meta) => {
    const t = Date.now();
    const W = v.videoWidth, H = v.videoHeight;
    if (W && H) {
      if (cv.width !== W || cv.height !== H) { cv.width = W; cv.height = H; }
      ctx.drawImage(v, 0, 0, W, H);
      const B = W / 16, px = ctx.getImageData(0, H - 3 * B, W, 3 * B).data;
      const bit = (i) => { const x = Math.floor((i % 16) * B + B / 2), y = Math.floor(Math.floor(i / 16) * B + B / 2);
        const o = (y * W + x) * 4; return (px[o] + px[o + 1] + px[o + 2]) / 3 > 128 ? 1 : 0; };
      let val = 0, ok = true;
      for (let i = 0; i < 32; i++) val = (val | (bit(i) << i)) >>> 0;
      for (let i = 0; i < 16; i++) if (bit(32 + i) === ((val >>> i) & 1)) ok = false;
      if (ok) {
        // The frame is on the glass at meta.expectedDisplayTime (performance clock).
        const shown = t + (meta.expectedDisplayTime - performance.now());
        glass.samples.push((((shown >>> 0) - val) | 0));
      } else glass.bad++;
    }
    v.requestVideoFrameCallback(step);
  };
  v.requestVideoFrameCallback(step);
  return true;
})()`

// TestBenchGlassToGlass measures broadcast delay from the publisher page's
// canvas (the test pattern, which carries the sender's clock) to the frame
// the viewer page shows, on loopback. Run with PARLEY_BENCH=1:
//
//	PARLEY_BENCH=1 go test ./internal/e2e -run TestBenchGlassToGlass -v -count=1
func TestBenchGlassToGlass(t *testing.T) {
	if os.Getenv("PARLEY_BENCH") == "" {
		t.Skip("set PARLEY_BENCH=1 to run the browser benchmark")
	}
	e := newBroadcastEnv(t)
	size0 := os.Getenv("PARLEY_BENCH_RES")
	if size0 == "" {
		size0 = "720"
	}
	pub := e.openPublisher("Host", "glass", "source=test&autostart=1&res="+size0)
	pub.waitFor(15*time.Second, "live", `document.body.dataset.state === 'live'`)
	v := e.openViewer("Val", "glass")
	v.waitDecoding(20 * time.Second)
	// The bandwidth estimate and the layers settle over the first few
	// seconds: 150 more frames decoded (5 s at 30 fps) before measuring.
	n := eval[float64](v, decodedJS)
	v.waitFor(60*time.Second, "150 more frames decoded", `(await `+decodedJS+`) >= `+jsonish(n+150))
	eval[bool](v, glassJS)
	// 900 frames read (30 s at 30 fps), however slowly the machine runs.
	v.waitFor(5*time.Minute, "900 frames read", `glass.samples.length + glass.bad >= 900`, `[glass.samples.length, glass.bad]`)
	type res struct {
		Samples []float64 `json:"samples"`
		Bad     int       `json:"bad"`
	}
	r := eval[res](v, `glass`)
	if len(r.Samples) < 100 {
		t.Fatalf("only %d readable frames (%d unreadable)", len(r.Samples), r.Bad)
	}
	s := slices.Clone(r.Samples)
	slices.Sort(s)
	p := func(q float64) float64 { return s[int(q*float64(len(s)-1))] }
	size := eval[string](v, `document.querySelector('#video').videoWidth + 'x' + document.querySelector('#video').videoHeight`)
	t.Logf("publisher layers (rid: width, fps, limitation): %s", jsonish(eval[any](pub, `(async () => { const o = {}; (await parleyApp.session.pc.getStats()).forEach(s => { if (s.type === 'outbound-rtp' && s.kind === 'video') o[s.rid] = [s.frameWidth || 0, s.framesPerSecond || 0, s.qualityLimitationReason]; }); return o; })()`)))
	t.Logf("glass-to-glass over %d frames (%d unreadable) at %s: median %.0f ms, p90 %.0f ms, p99 %.0f ms, min %.0f, max %.0f; viewer readout %q",
		len(s), r.Bad, size, p(0.5), p(0.9), p(0.99), s[0], s[len(s)-1], eval[string](v, `document.querySelector('#readout').textContent`))
}
