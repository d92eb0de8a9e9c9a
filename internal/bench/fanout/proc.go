package fanout

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// readCPU returns utime+stime of a process in seconds, from /proc/<pid>/stat.
func readCPU(pid int) (float64, error) {
	if pid == 0 {
		return 0, fmt.Errorf("fanout: no server pid")
	}
	if pid == os.Getpid() {
		return selfCPU(), nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("fanout: %w", err)
	}
	// The command name (field 2) may contain spaces; fields after ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("fanout: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("fanout: short /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("fanout: parse /proc/%d/stat", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// selfCPU is this process's user+system CPU time in seconds (microsecond
// resolution, from getrusage).
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// readRSS returns VmRSS of a process in bytes.
func readRSS(pid int) (int64, error) {
	if pid == 0 {
		return 0, fmt.Errorf("fanout: no server pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("fanout: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("fanout: VmRSS: %w", err)
				}
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("fanout: no VmRSS in /proc/%d/status", pid)
}
