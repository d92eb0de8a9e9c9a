// Package proc reads a process's CPU time and memory from /proc, for the
// load tools: they measure a server in another process apart from
// themselves.
package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports (Go has no sysconf to ask).
const clockTicks = 100

// CPU is user and system CPU seconds of a process.
type CPU struct{ User, Sys float64 }

// Total is user + system seconds.
func (c CPU) Total() float64 { return c.User + c.Sys }

// ReadCPU reads utime and stime of pid (0 = this process) from /proc.
func ReadCPU(pid int) (CPU, error) {
	path := "/proc/self/stat"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	c, _, err := readStat(path)
	return c, err
}

// ChildrenCPU is the CPU seconds of each live child process of pid (its
// direct children, e.g. a server's ffmpeg transcoders), by process id:
// what its own utime and stime leave out until a child is reaped.
func ChildrenCPU(pid int) (map[int]float64, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("proc: children: %w", err)
	}
	out := map[int]float64{}
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		c, ppid, err := readStat("/proc/" + e.Name() + "/stat")
		if err == nil && ppid == pid {
			out[child] = c.Total()
		}
	}
	return out, nil
}

// readStat reads a /proc/<pid>/stat: CPU times and parent process id.
func readStat(path string) (CPU, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return CPU{}, 0, fmt.Errorf("proc: read cpu time: %w", err)
	}
	// The command name (field 2) may contain spaces; after ")" come state,
	// ppid, ... with utime and stime at positions 11 and 12.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return CPU{}, 0, fmt.Errorf("proc: malformed %s", path)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return CPU{}, 0, fmt.Errorf("proc: short %s", path)
	}
	ppid, err0 := strconv.Atoi(f[1])
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err0 != nil || err1 != nil || err2 != nil {
		return CPU{}, 0, fmt.Errorf("proc: parse %s", path)
	}
	return CPU{float64(ut) / clockTicks, float64(st) / clockTicks}, ppid, nil
}

// SelfCPU is this process's user+system CPU time in seconds, with
// microsecond resolution (getrusage).
func SelfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// ProcessesCPU is the CPU seconds the processes have used, summed; this
// process is read with getrusage's finer resolution. A pid of 0 (no
// process known) is an error, not this process.
func ProcessesCPU(pids []int) (float64, error) {
	if len(pids) == 0 {
		return 0, errors.New("proc: no process to read")
	}
	var sum float64
	for _, pid := range pids {
		if pid <= 0 {
			return 0, errors.New("proc: no process id")
		}
		if pid == os.Getpid() {
			sum += SelfCPU()
			continue
		}
		c, err := ReadCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += c.Total()
	}
	return sum, nil
}

// RSS returns VmRSS of pid (0 = this process) in bytes.
func RSS(pid int) (int64, error) {
	path := "/proc/self/status"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("proc: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("proc: VmRSS: %w", err)
				}
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("proc: no VmRSS in %s", path)
}

// HostBusySeconds is the non-idle CPU time of all CPUs, from /proc/stat.
// Compared with a server's and a load tool's CPU it shows how much other
// work shared the machine during a run.
func HostBusySeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy uint64
	for i := 1; i < len(f) && i <= 8; i++ {
		if i == 4 || i == 5 { // idle, iowait
			continue
		}
		v, _ := strconv.ParseUint(f[i], 10, 64)
		busy += v
	}
	return float64(busy) / clockTicks
}

// RaiseFileLimit lifts this process's open-file limit (and so its
// children's) to at least n when it can: the soft limit up to the hard
// one, and the hard one too when the process may (CAP_SYS_RESOURCE). It
// returns the soft limit in force afterwards, and why it is below n.
func RaiseFileLimit(n uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("proc: getrlimit: %w", err)
	}
	if lim.Cur >= n {
		return lim.Cur, nil
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	if err == nil {
		return n, nil
	}
	high := fmt.Errorf("proc: open-file limit above the hard limit %d: %w", lim.Max, err)
	lim.Cur = lim.Max // not allowed above the hard limit: go as far as it
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("proc: setrlimit: %w", err)
	}
	return lim.Cur, high
}
