package netlab

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// Forward listens on 127.0.0.1 in the test's own namespace and connects
// each accepted connection to addr inside namespace ns, e.g. to reach a
// Chromium in a client namespace whose DevTools port is on that
// namespace's loopback. It returns the local address; Close ends the
// listener and every forwarded connection.
func Forward(ns, addr string) (*Forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netlab: forward listen: %w", err)
	}
	f := &Forwarder{ln: ln, ns: ns, addr: addr, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Forwarder is a running Forward.
type Forwarder struct {
	ln       net.Listener
	ns, addr string
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

// Addr is the local address to connect to.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Close stops forwarding and waits for its goroutines.
func (f *Forwarder) Close() error {
	err := f.ln.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

func (f *Forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *Forwarder) accept() {
	defer f.wg.Done()
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		var out net.Conn
		err = Do(f.ns, func() error { // the socket is made in ns, then used from anywhere
			var err error
			out, err = net.Dial("tcp", f.addr)
			return err
		})
		if err != nil || !f.track(in, out) {
			_ = in.Close()
			if out != nil {
				_ = out.Close()
			}
			continue
		}
		f.wg.Add(2)
		go f.pipe(in, out)
		go f.pipe(out, in)
	}
}

// pipe copies src to dst, then closes both (ending the other direction).
func (f *Forwarder) pipe(dst, src net.Conn) {
	defer f.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	f.mu.Lock()
	delete(f.conns, dst)
	delete(f.conns, src)
	f.mu.Unlock()
}
