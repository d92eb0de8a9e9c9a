package fanout

import "syscall"

// smallReadBuffer is a net.Dialer Control that sets SO_RCVBUF to 4 KiB
// before the socket connects (the kernel doubles it and keeps a minimum).
func smallReadBuffer(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	}); err != nil {
		return err
	}
	return serr
}
