package backoff

import (
	"testing"
	"time"
)

// TestBackoff: waits double from Min up to Max, within ±20 %, and Reset
// starts again from Min.
func TestBackoff(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 5 * time.Second}
	for i, want := range []time.Duration{1, 2, 4, 5, 5} {
		want *= time.Second
		if d := b.Next(); d < want-want/5 || d > want+want/5 {
			t.Fatalf("wait %d: %v, want %v ±20 %%", i, d, want)
		}
	}
	b.Reset()
	if d := b.Next(); d > 1200*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
}
