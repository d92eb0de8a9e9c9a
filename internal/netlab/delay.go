package netlab

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Option changes how AddClient builds a client's link.
type Option func(*linkOpts)

type linkOpts struct {
	delay, jitter time.Duration
}

// Delay delays every packet between the client and its router by delay ±
// jitter (uniform), each direction on its own. This kernel has no netem,
// so the link is then a pair of TUN devices (router "lan", client "eth0")
// joined by a forwarder in the test process instead of a veth pair.
// Packets keep their order (jitter never reorders), as on most links.
func Delay(delay, jitter time.Duration) Option {
	return func(o *linkOpts) { o.delay, o.jitter = delay, jitter }
}

// delayLine forwards packets between two TUN devices after a delay.
type delayLine struct {
	files []*os.File
	done  chan struct{}
	wg    sync.WaitGroup
}

// newDelayLink creates TUN "lan" in router and "eth0" in client and starts
// forwarding between them; stop ends it.
func newDelayLink(router, client string, o linkOpts) (*delayLine, error) {
	lan, err := openTUN(router, "lan")
	if err != nil {
		return nil, err
	}
	eth, err := openTUN(client, "eth0")
	if err != nil {
		_ = lan.Close()
		return nil, err
	}
	d := &delayLine{files: []*os.File{lan, eth}, done: make(chan struct{})}
	d.pipe(lan, eth, o)
	d.pipe(eth, lan, o)
	return d, nil
}

// pipe forwards from → to: a reader stamps each packet with its due time,
// a writer sends it then. A full queue drops, as a router's would.
func (d *delayLine) pipe(from, to *os.File, o linkOpts) {
	type item struct {
		pkt []byte
		due time.Time
	}
	q := make(chan item, 4096)
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		defer close(q)
		var last time.Time
		for {
			buf := make([]byte, 65536)
			n, err := from.Read(buf)
			if err != nil {
				return // closed by stop
			}
			due := time.Now().Add(o.delay)
			if o.jitter > 0 {
				due = due.Add(time.Duration(rand.Int64N(int64(2*o.jitter+1))) - o.jitter)
			}
			if due.Before(last) {
				due = last // no reordering
			}
			last = due
			select {
			case q <- item{buf[:n], due}:
			default:
			}
		}
	}()
	go func() {
		defer d.wg.Done()
		t := time.NewTimer(0)
		defer t.Stop()
		for it := range q {
			if wait := time.Until(it.due); wait > 0 {
				t.Reset(wait)
				select {
				case <-t.C:
				case <-d.done:
					return
				}
			}
			_, _ = to.Write(it.pkt) // a write to a device going down is a lost packet
		}
	}()
}

func (d *delayLine) stop() {
	close(d.done)
	for _, f := range d.files {
		_ = f.Close()
	}
	d.wg.Wait()
}

// openTUN creates TUN device name (IP packets, no header) inside ns. The
// device lives as long as the returned file is open.
func openTUN(ns, name string) (*os.File, error) {
	var f *os.File
	err := Do(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("netlab: open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			_ = unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			_ = unix.Close(fd)
			return fmt.Errorf("netlab: TUNSETIFF %s in %s: %w", name, ns, err)
		}
		f = os.NewFile(uintptr(fd), name) // non-blocking: reads go through the poller, Close ends them
		return nil
	})
	return f, err
}
