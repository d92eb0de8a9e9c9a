package proc

import (
	"os"
	"testing"
)

func TestReaders(t *testing.T) {
	for i := 0; i < 1e7; i++ { // burn a little CPU so the counters move
		_ = i * i
	}
	if c, err := ReadCPU(0); err != nil || c.Total() < 0 {
		t.Fatalf("self: %+v %v", c, err)
	}
	if _, err := ReadCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if SelfCPU() <= 0 {
		t.Fatal("no self CPU")
	}
	if r, err := RSS(0); err != nil || r <= 0 {
		t.Fatalf("rss %d %v", r, err)
	}
	if _, err := ReadCPU(1 << 30); err == nil {
		t.Fatal("a missing process read fine")
	}
}
