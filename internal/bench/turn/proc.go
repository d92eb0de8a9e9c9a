package turn

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

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
