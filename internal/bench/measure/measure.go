// Package measure holds the small pieces every load tool needs to report
// figures: percentiles of samples and a context-aware wait.
package measure

import (
	"context"
	"math"
	"time"
)

// Percentile is the p-th percentile (0..100, nearest rank) of sorted
// samples; 0 when there are none.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Sleep waits for d, or less when ctx ends (then it returns ctx.Err()).
// Load tools pace phases (warm-up, measurement window) with it.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
