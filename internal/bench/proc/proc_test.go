package proc

import (
	"os"
	"os/exec"
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

func TestChildrenCPU(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep(1):", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	kids, err := ChildrenCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := kids[cmd.Process.Pid]; !ok {
		t.Fatalf("child %d not among %v", cmd.Process.Pid, kids)
	}
}

func TestProcessesCPU(t *testing.T) {
	if _, err := ProcessesCPU(nil); err == nil {
		t.Fatal("no processes read as 0 s")
	}
	if _, err := ProcessesCPU([]int{0}); err == nil {
		t.Fatal("pid 0 read as this process")
	}
	self, err := ProcessesCPU([]int{os.Getpid()})
	if err != nil || self <= 0 {
		t.Fatalf("this process: %v %v", self, err)
	}
	two, err := ProcessesCPU([]int{os.Getpid(), os.Getpid()})
	if err != nil || two < 2*self {
		t.Fatalf("summed: %v (one: %v) %v", two, self, err)
	}
}
