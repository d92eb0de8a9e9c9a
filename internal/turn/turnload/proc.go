package turnload

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times. It is 100 on
// every mainstream Linux build; Go has no sysconf to ask.
const clockTicks = 100

// cpuTimes is user and system CPU seconds of a process.
type cpuTimes struct{ user, sys float64 }

// cpuSeconds reads utime and stime of pid (0 = this process) from /proc.
func cpuSeconds(pid int) (cpuTimes, error) {
	path := "/proc/self/stat"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("turnload: read cpu time: %w", err)
	}
	// The command name (field 2) may contain spaces; fields after ")" are
	// state, ppid, ... with utime and stime at positions 11 and 12.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return cpuTimes{}, fmt.Errorf("turnload: short %s", path)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return cpuTimes{}, fmt.Errorf("turnload: parse %s", path)
	}
	return cpuTimes{float64(ut) / clockTicks, float64(st) / clockTicks}, nil
}

// udpErrors returns the host-wide UDP RcvbufErrors and SndbufErrors from
// /proc/net/snmp: the kernel's count of datagrams dropped for full socket
// buffers, which tells whether loss happened in a socket queue at all.
func udpErrors() (rcv, snd uint64) {
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var header []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = fields
			continue
		}
		for i := 1; i < len(fields) && i < len(header); i++ {
			v, _ := strconv.ParseUint(fields[i], 10, 64)
			switch header[i] {
			case "RcvbufErrors":
				rcv = v
			case "SndbufErrors":
				snd = v
			}
		}
	}
	return rcv, snd
}

// setBuffers gives the generator's own sockets 4 MiB buffers, as the
// server does, so the generator is not the one dropping.
func setBuffers(c *net.UDPConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF, unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
			_ = syscall.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 4<<20)
		}
	})
}

// hostBusySeconds is the non-idle CPU time of all CPUs from /proc/stat.
// Compared with server and generator CPU it shows how much other work
// shared the machine during a run.
func hostBusySeconds() float64 {
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
