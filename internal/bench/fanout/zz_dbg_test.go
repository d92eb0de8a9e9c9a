package fanout

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

type tsw struct{ t0 time.Time }

func (w tsw) Write(b []byte) (int, error) {
	fmt.Fprintf(os.Stderr, "%6.2fs %s", time.Since(w.t0).Seconds(), b)
	return len(b), nil
}

func TestDbgStalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t0 := time.Now()
	_, err := Run(ctx, Options{Viewers: 6, Stalled: 34, Warmup: time.Second, Duration: 2 * time.Second,
		VideoBitrate: 1_000_000, waitDrops: true, Progress: tsw{t0}})
	fmt.Fprintf(os.Stderr, "%6.2fs done %v\n", time.Since(t0).Seconds(), err)
}
