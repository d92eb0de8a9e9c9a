package e2e

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// TestBenchJoinToFirstFrame measures, in the page, the time from pressing
// Join to the first decoded remote video frame (median of 10 runs), and the
// JavaScript the call page loads. Run with PARLEY_BENCH=1:
//
//	PARLEY_BENCH=1 go test ./internal/e2e -run TestBenchJoinToFirstFrame -v -count=1
func TestBenchJoinToFirstFrame(t *testing.T) {
	if os.Getenv("PARLEY_BENCH") == "" {
		t.Skip("set PARLEY_BENCH=1 to run the browser benchmark")
	}
	e := newEnv(t, nil)
	a, b := e.launch("Host"), e.launch("Guest")
	var ms []float64
	for i := range 10 {
		room := fmt.Sprintf("bench-%d", i)
		a.join(room)
		b.open(room, "")
		b.click("#join")
		b.waitFor(10*time.Second, "the first remote frame", `performance.getEntriesByName('parley:join-to-first-frame').length > 0`)
		v := eval[float64](b, `performance.getEntriesByName('parley:join-to-first-frame')[0].duration`)
		ms = append(ms, v)
		if i == 0 {
			type res struct {
				Files   int     `json:"files"`
				Decoded float64 `json:"decoded"`
			}
			js := eval[res](b, `(() => { const r = performance.getEntriesByType('resource').filter(e => e.name.endsWith('.js'));
			  return {files: r.length, decoded: r.reduce((s, e) => s + e.decodedBodySize, 0)}; })()`)
			t.Logf("call page JS: %d files, %.0f bytes uncompressed", js.Files, js.Decoded)
			if js.Decoded > 150_000 {
				t.Errorf("call page JS is %.0f bytes, budget 150000", js.Decoded)
			}
		}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	median := (s[4] + s[5]) / 2
	t.Logf("join → first remote frame, ms: %v; median %.0f, min %.0f, max %.0f", ms, median, s[0], s[9])
}
