package show

import (
	"encoding/json"
	"errors"
	"math"
)

// The audible range bands are cut from, in Hz.
const (
	MinFreq = 40.0
	MaxFreq = 16000.0
)

// Limits on a band a host may set by hand, in Hz.
const (
	minBandFreq = 1.0
	maxBandFreq = 24000.0
)

// Band is a frequency range [Lo, Hi) in Hz.
type Band [2]float64

// UnmarshalJSON takes exactly two numbers, [lo, hi].
func (b *Band) UnmarshalJSON(data []byte) error {
	var v []float64
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	if len(v) != 2 {
		return errors.New("a band is [lo, hi]: two numbers")
	}
	*b = Band{v[0], v[1]}
	return nil
}

// Lo is the lower edge.
func (b Band) Lo() float64 { return b[0] }

// Hi is the upper edge.
func (b Band) Hi() float64 { return b[1] }

// Contains reports whether f lies in [Lo, Hi).
func (b Band) Contains(f float64) bool { return f >= b[0] && f < b[1] }

// valid reports whether a hand-set band makes sense.
func (b Band) valid() bool {
	return !math.IsNaN(b[0]) && !math.IsNaN(b[1]) && b[0] >= minBandFreq && b[1] <= maxBandFreq && b[0] < b[1]
}

// Bands splits [lo, hi] into n adjacent bands of equal width on a log
// scale (equal musical intervals), lowest first. Edges are rounded to
// 0.1 Hz; the outer edges are exactly lo and hi. n < 1 gives nil.
func Bands(n int, lo, hi float64) []Band {
	if n < 1 || lo <= 0 || hi <= lo {
		return nil
	}
	edges := make([]float64, n+1)
	ratio := math.Log(hi / lo)
	for i := range edges {
		edges[i] = math.Round(lo*math.Exp(ratio*float64(i)/float64(n))*10) / 10
	}
	edges[0], edges[n] = lo, hi
	out := make([]Band, n)
	for i := range out {
		out[i] = Band{edges[i], edges[i+1]}
	}
	return out
}
