package turn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// defaultSocketBuffer is the SO_RCVBUF/SO_SNDBUF size asked for. A relayed
// media burst at 100k packets/s fills the kernel default (208 KiB) in a
// couple of milliseconds of scheduling delay; 4 MiB rides out ~40 ms.
const defaultSocketBuffer = 4 << 20

// bufferControl returns a net.ListenConfig Control hook that enlarges the
// socket buffers and, when reusePort is set, enables SO_REUSEPORT so several
// sockets can share one port and the kernel spreads clients across them.
// size <= 0 leaves the OS default buffers.
func bufferControl(size int, reusePort bool) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var opErr error
		err := c.Control(func(fd uintptr) {
			if reusePort {
				opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
			if size > 0 {
				setBuffers(int(fd), size)
			}
		})
		if err != nil {
			return err
		}
		return opErr
	}
}

// setBuffers asks for size-byte buffers. The plain options are capped by
// net.core.[rw]mem_max; the FORCE variants bypass the cap when we hold
// CAP_NET_ADMIN (e.g. root in a container) and fail harmlessly otherwise,
// so errors are ignored: a smaller buffer is a performance, not a
// correctness, problem.
func setBuffers(fd, size int) {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, size)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
}

// family is one address family the server listens on.
type family struct {
	udpNet, tcpNet string     // "udp4"/"tcp4" or "udp6"/"tcp6"
	host           netip.Addr // bind address (possibly unspecified)
}

// families splits the configured host into the per-family binds. A
// wildcard host yields an IPv4 and an IPv6 family: pion/turn always asks
// the relay generator for "udp4", so the only way to hand IPv6 clients an
// IPv6 relay is a separate v6-only listener whose generator knows its family.
func families(host string) ([]family, error) {
	if host == "" {
		return []family{
			{"udp4", "tcp4", netip.IPv4Unspecified()},
			{"udp6", "tcp6", netip.IPv6Unspecified()},
		}, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
		if lerr != nil || len(ips) == 0 {
			return nil, fmt.Errorf("turn: listen host %q: %w", host, errors.Join(err, lerr))
		}
		a = ips[0]
	}
	a = a.Unmap()
	if a.Is4() {
		return []family{{"udp4", "tcp4", a}}, nil
	}
	return []family{{"udp6", "tcp6", a}}, nil
}

// listenFamily binds n UDP sockets and one TCP listener on port for f.
// port 0 picks a free port shared by UDP and TCP, retrying a few times in
// case TCP's half of the pair is taken.
func listenFamily(f family, port, n, buf int) ([]net.PacketConn, net.Listener, error) {
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var udp []net.PacketConn
		var tcp net.Listener
		udp, tcp, err = tryListenFamily(f, port, n, buf)
		if err == nil {
			return udp, tcp, nil
		}
	}
	return nil, nil, err
}

func tryListenFamily(f family, port, n, buf int) ([]net.PacketConn, net.Listener, error) {
	udp, err := listenUDPGroup(f, port, n, buf)
	if err != nil {
		return nil, nil, err
	}
	uport := udp[0].LocalAddr().(*net.UDPAddr).Port
	lc := net.ListenConfig{Control: bufferControl(buf, false)}
	tcp, err := lc.Listen(context.Background(), f.tcpNet, joinHostPort(f.host, uport))
	if err != nil {
		closeAll(udp)
		return nil, nil, fmt.Errorf("turn: listen %s %s: %w", f.tcpNet, joinHostPort(f.host, uport), err)
	}
	return udp, tcp, nil
}

// listenUDPGroup binds n SO_REUSEPORT sockets on one port. For a fixed port
// it first binds once without SO_REUSEPORT as a probe: SO_REUSEPORT would
// otherwise let us silently share the port with another process of the
// same user (e.g. a second Parley), splitting its traffic between us.
func listenUDPGroup(f family, port, n, buf int) ([]net.PacketConn, error) {
	if port != 0 {
		probe, err := net.ListenPacket(f.udpNet, joinHostPort(f.host, port))
		if err != nil {
			return nil, fmt.Errorf("turn: listen %s: %w", f.udpNet, err)
		}
		_ = probe.Close()
	}
	lc := net.ListenConfig{Control: bufferControl(buf, n > 1)}
	conns := make([]net.PacketConn, 0, n)
	for range n {
		c, err := lc.ListenPacket(context.Background(), f.udpNet, joinHostPort(f.host, port))
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("turn: listen %s %s: %w", f.udpNet, joinHostPort(f.host, port), err)
		}
		port = c.LocalAddr().(*net.UDPAddr).Port
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []net.PacketConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

func joinHostPort(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}
