package e2e

import (
	"os"
	"slices"
	"testing"
	"time"
)

// onsetsJS lists the screen's onsets (its level crossing up through 160,
// which it paints): User Timing marks.
const onsetsJS = `performance.getEntriesByName('parley:show-onset')`

// TestBenchShowLatency measures the light show's latency on loopback: a
// 1 kHz tone burst starts at the host page (WebAudio → WHIP → SFU → WHEP)
// until the screen's painted level crosses 160/255 (median of 10), and a
// flash sent by the host over the control channel until the screen gets it.
// Both ends read the same wall clock (performance.timeOrigin + now()).
// Run with PARLEY_BENCH=1:
//
//	PARLEY_BENCH=1 go test ./internal/e2e -run TestBenchShowLatency -v -count=1
func TestBenchShowLatency(t *testing.T) {
	if os.Getenv("PARLEY_BENCH") == "" {
		t.Skip("set PARLEY_BENCH=1 to run the browser benchmark")
	}
	e := newShowEnv(t)
	host := e.openShowHost("Host", "bench")
	scr := e.openScreen("Screen", "bench", "Solo")          // alone: the whole 40 Hz-16 kHz band
	eval[float64](host, `parleyApp.toneBurst(1000, 50, 0)`) // silent: go on air
	host.waitFor(15*time.Second, "the show on air", `document.querySelector('#air').textContent === 'On air'`, `document.querySelector('#air').textContent`)
	scr.waitFor(20*time.Second, "the show's audio", `document.body.dataset.audio === 'live'`, `document.body.dataset.audio`)
	// Let the jitter buffer settle: two seconds of the show's audio
	// received (96000 samples at 48 kHz), not of wall clock.
	samplesJS := `(async () => { let n = 0; (await parleyApp.session.pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'audio') n += s.totalSamplesReceived || 0; }); return n; })()`
	n0 := eval[float64](scr, samplesJS)
	scr.waitFor(30*time.Second, "two seconds of audio received", `(await `+samplesJS+`) >= `+jsonish(n0+96000), samplesJS)

	var tone, ctl []float64
	for i := range 10 {
		// Dark: blue below 32 is the level below 32 (red ↔ blue palette).
		scr.waitFor(5*time.Second, "the screen dark before the burst", screenRGB+`[2] < 32`, screenRGB)
		n := eval[float64](scr, onsetsJS+`.length`)
		t0 := eval[float64](host, `parleyApp.toneBurst(1000, 400, 0.5)`)
		scr.waitFor(5*time.Second, "the burst on the screen", onsetsJS+`.length > `+jsonish(n), screenRGB)
		t1 := eval[float64](scr, `performance.timeOrigin + `+onsetsJS+`[`+jsonish(n)+`].startTime`)
		tone = append(tone, t1-t0)

		f := eval[float64](scr, flashesJS)
		c0 := eval[float64](host, `(() => { document.querySelector('#flash-color').value = '#000000'; const t = performance.timeOrigin + performance.now(); document.querySelector('#btn-flash').click(); return t })()`)
		scr.waitFor(5*time.Second, "the flash", flashesJS+` > `+jsonish(f))
		ctl = append(ctl, eval[float64](scr, `performance.timeOrigin + performance.getEntriesByName('parley:show-flash')[`+jsonish(f)+`].startTime`)-c0)
		t.Logf("run %d: tone %.0f ms, control %.1f ms", i+1, tone[i], ctl[i])
		time.Sleep(800 * time.Millisecond) // pacing: the runs are 0.8 s apart, not synchronization (each run waits for the screen dark first)
	}
	med := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	st, sc := slices.Clone(tone), slices.Clone(ctl)
	slices.Sort(st)
	slices.Sort(sc)
	t.Logf("tone burst → screen colour: median %.0f ms, min %.0f, max %.0f (n=%d)", med(tone), st[0], st[len(st)-1], len(st))
	t.Logf("host flash → screen (control channel): median %.1f ms, min %.1f, max %.1f", med(ctl), sc[0], sc[len(sc)-1])
	jb := eval[float64](scr, `(async () => { let d = 0, n = 0; const s = parleyApp.session;
	  if (!s) return -1; (await s.pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'audio') { d += r.jitterBufferDelay || 0; n += r.jitterBufferEmittedCount || 0; } });
	  return n ? 1000 * d / n : -1; })()`)
	t.Logf("screen jitter buffer: %.0f ms on average over the session", jb)
	pair := eval[string](scr, `(async () => { const r = await parleyApp.session.pc.getStats(); const m = new Map(); r.forEach(s => m.set(s.id, s));
	  let out = ''; r.forEach(s => { if (s.type === 'transport' && s.selectedCandidatePairId) { const p = m.get(s.selectedCandidatePairId);
	    out = m.get(p.localCandidateId).candidateType + '/' + m.get(p.remoteCandidateId).candidateType + ' ' + m.get(p.localCandidateId).protocol; } }); return out; })()`)
	t.Logf("screen's WHEP candidate pair: %s", pair)
	if m := med(tone); m >= 250 {
		t.Errorf("median show latency %.0f ms, goal < 250 ms", m)
	}
	if m := med(ctl); m >= 100 {
		t.Errorf("median control latency %.1f ms, goal < 100 ms", m)
	}
}
