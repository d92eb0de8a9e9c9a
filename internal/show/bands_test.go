package show

import (
	"math"
	"testing"
)

func TestBands(t *testing.T) {
	tests := []struct {
		n      int
		lo, hi float64
		want   []Band
	}{
		{0, 40, 16000, nil},
		{-1, 40, 16000, nil},
		{3, 0, 16000, nil},
		{3, 100, 100, nil},
		{1, 40, 16000, []Band{{40, 16000}}},
		{2, 40, 16000, []Band{{40, 800}, {800, 16000}}},
		{3, 100, 100000, []Band{{100, 1000}, {1000, 10000}, {10000, 100000}}},
		{4, 40, 16000, []Band{{40, 178.9}, {178.9, 800}, {800, 3577.7}, {3577.7, 16000}}},
	}
	for _, tc := range tests {
		got := Bands(tc.n, tc.lo, tc.hi)
		if len(got) != len(tc.want) {
			t.Errorf("Bands(%d, %v, %v) = %v, want %v", tc.n, tc.lo, tc.hi, got, tc.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i][0]-tc.want[i][0]) > 0.05 || math.Abs(got[i][1]-tc.want[i][1]) > 0.05 {
				t.Errorf("Bands(%d, %v, %v)[%d] = %v, want %v", tc.n, tc.lo, tc.hi, i, got[i], tc.want[i])
			}
		}
	}
}

func TestBandsAdjacentAndLog(t *testing.T) {
	for n := 1; n <= 200; n++ {
		bs := Bands(n, MinFreq, MaxFreq)
		if len(bs) != n || bs[0].Lo() != MinFreq || bs[n-1].Hi() != MaxFreq {
			t.Fatalf("n=%d: %v", n, bs)
		}
		want := math.Log(MaxFreq/MinFreq) / float64(n)
		for i, b := range bs {
			if i > 0 && b.Lo() != bs[i-1].Hi() {
				t.Fatalf("n=%d: band %d not adjacent: %v after %v", n, i, b, bs[i-1])
			}
			if b.Lo() >= b.Hi() {
				t.Fatalf("n=%d: empty band %d: %v", n, i, b)
			}
			if got := math.Log(b.Hi() / b.Lo()); math.Abs(got-want) > 0.01 {
				t.Fatalf("n=%d: band %d spans %v (log), want %v", n, i, got, want)
			}
		}
	}
}

func TestBandContains(t *testing.T) {
	b := Band{800, 16000}
	for f, want := range map[float64]bool{799.9: false, 800: true, 1000: true, 15999: true, 16000: false} {
		if b.Contains(f) != want {
			t.Errorf("%v.Contains(%v) = %v", b, f, !want)
		}
	}
}
