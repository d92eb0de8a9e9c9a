// Package netlab builds throwaway networks for tests out of Linux network
// namespaces, veth pairs, iptables NAT and tc: a "public" segment that the
// test process (host) reaches through one veth, and clients each behind
// their own NAT router on that segment. Tests need root; everything a lab
// creates is removed in t.Cleanup, and labs left behind by a killed test
// process are swept when the next lab starts.
//
// Layout of a lab (P is a /24 in 10.213.0.0/16 that no host route uses):
//
//	host (test process)  10.213.P.1  pl<id>h ── veth ──┐
//	ns pl-<pid>-<id>-pub   bridge br0 ─────────────────┤
//	ns pl-<pid>-<id>-rN    wan 10.213.P.(10+N) ── veth ┘  lan 10.214.N.1
//	ns pl-<pid>-<id>-cN    eth0 10.214.N.2, default via 10.214.N.1
package netlab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// NAT is the behaviour of a client's router.
type NAT int

const (
	// NoNAT routes the client's private address unchanged (reachable only
	// from inside the lab's private ranges: useful as a control).
	NoNAT NAT = iota
	// FullCone is endpoint-independent mapping and filtering: MASQUERADE
	// keeps the source port, and a DNAT rule sends every UDP packet that
	// arrives on the router's public address to the client at the same port.
	FullCone
	// PortRestricted is plain MASQUERADE: endpoint-independent mapping
	// (source port kept) but address-and-port-dependent filtering
	// (conntrack admits replies only from endpoints the client sent to).
	PortRestricted
	// Symmetric is MASQUERADE --random-fully: a new random public port for
	// every destination, so a STUN-learned address is useless to peers.
	Symmetric
)

func (n NAT) String() string {
	switch n {
	case FullCone:
		return "full-cone"
	case PortRestricted:
		return "port-restricted"
	case Symmetric:
		return "symmetric"
	}
	return "none"
}

// Lab is one test's network. Its zero value is not usable: call New.
type Lab struct {
	t       testing.TB
	prefix  string     // namespace name prefix, "pl-<pid>-<id>"
	pub     string     // namespace holding the public bridge
	net     int        // third octet of the public /24
	HostIP  netip.Addr // the test process's address on the public segment
	clients int
}

// Client is a namespace behind its own router.
type Client struct {
	lab    *Lab
	NS     string     // the client's namespace (run peers here)
	Router string     // the router's namespace
	IP     netip.Addr // the client's private address
	WANIP  netip.Addr // the router's public address (the NAT's address)
	NAT    NAT
	tun    bool // the link is TUN devices and a forwarder (Delay), not a veth pair
}

// Require skips the test when it cannot build a lab (not root, or ip,
// iptables or tc missing) — unless CI is set, where that is a failure.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"ip", "iptables", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "netlab needs " + strings.Join(missing, ", ") + " (run as root; apt-get install iproute2 iptables)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// New builds the public segment and returns the lab; clients are added
// with AddClient. Everything is removed when the test ends.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	sweep(t)
	id := randHex(3)
	l := &Lab{t: t, prefix: fmt.Sprintf("pl-%d-%s", os.Getpid(), id)}
	l.pub = l.prefix + "-pub"
	hostIf := "pl" + id + "h"
	t.Cleanup(func() { l.teardown(hostIf) })
	// Labs of test processes running side by side (go test ./...) must
	// not pick the same subnet: choose and claim it under a lock.
	unlock := lockFile(t, filepath.Join(os.TempDir(), "parley-netlab.lock"))
	defer unlock()
	l.net = freeSubnet(t)
	l.HostIP = netip.AddrFrom4([4]byte{10, 213, byte(l.net), 1})
	l.addNS(l.pub)
	l.nsMust(l.pub, "ip", "link", "add", "br0", "type", "bridge")
	l.nsMust(l.pub, "ip", "link", "set", "br0", "up")
	l.must("ip", "link", "add", hostIf, "type", "veth", "peer", "name", "host", "netns", l.pub)
	l.must("sysctl", "-qw", "net.ipv6.conf."+hostIf+".disable_ipv6=1") // see addNS
	l.nsMust(l.pub, "ip", "link", "set", "host", "master", "br0", "up")
	l.must("ip", "addr", "add", fmt.Sprintf("%s/24", l.HostIP), "dev", hostIf)
	l.must("ip", "link", "set", hostIf, "up")
	return l
}

// addNS creates namespace ns with its loopback up and IPv6 off. The lab
// is IPv4 only; with IPv6 on, each interface gets a link-local address
// that becomes valid a second or two after it comes up (duplicate address
// detection), and a browser in the namespace takes that late change for a
// network switch: the page it was loading fails with ERR_NETWORK_CHANGED.
func (l *Lab) addNS(ns string) {
	l.t.Helper()
	l.must("ip", "netns", "add", ns)
	l.nsMust(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	l.nsMust(ns, "ip", "link", "set", "lo", "up")
}

// AddClient adds a client namespace behind a new router with the given NAT.
func (l *Lab) AddClient(nat NAT, opts ...Option) *Client {
	l.t.Helper()
	var o linkOpts
	for _, opt := range opts {
		opt(&o)
	}
	l.clients++
	n := l.clients
	if n > 200 {
		l.t.Fatal("netlab: too many clients")
	}
	c := &Client{lab: l, NAT: nat,
		NS:     fmt.Sprintf("%s-c%d", l.prefix, n),
		Router: fmt.Sprintf("%s-r%d", l.prefix, n),
		IP:     netip.AddrFrom4([4]byte{10, 214, byte(n), 2}),
		WANIP:  netip.AddrFrom4([4]byte{10, 213, byte(l.net), byte(10 + n)}),
	}
	lanGW := netip.AddrFrom4([4]byte{10, 214, byte(n), 1})
	r, cl := c.Router, c.NS
	l.addNS(r)
	l.addNS(cl)
	// router wan <-> bridge port rN in the public namespace
	port := fmt.Sprintf("r%d", n)
	l.nsMust(r, "ip", "link", "add", "wan", "type", "veth", "peer", "name", port, "netns", l.pub)
	l.nsMust(l.pub, "ip", "link", "set", port, "master", "br0", "up")
	l.nsMust(r, "ip", "addr", "add", c.WANIP.String()+"/24", "dev", "wan")
	l.nsMust(r, "ip", "link", "set", "wan", "up")
	// router lan <-> client eth0: a veth pair, or TUN devices and a
	// forwarder in this process when the link has delay
	if o.delay > 0 || o.jitter > 0 {
		d, err := newDelayLink(r, cl, o)
		if err != nil {
			l.t.Fatal(err)
		}
		l.t.Cleanup(d.stop)
		c.tun = true
		l.nsMust(r, "ip", "addr", "add", lanGW.String(), "peer", c.IP.String(), "dev", "lan")
		l.nsMust(cl, "ip", "addr", "add", c.IP.String(), "peer", lanGW.String(), "dev", "eth0")
	} else {
		l.nsMust(r, "ip", "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", cl)
		l.nsMust(r, "ip", "addr", "add", lanGW.String()+"/24", "dev", "lan")
		l.nsMust(cl, "ip", "addr", "add", c.IP.String()+"/24", "dev", "eth0")
	}
	l.nsMust(r, "ip", "link", "set", "lan", "up")
	l.nsMust(cl, "ip", "link", "set", "eth0", "up")
	l.nsMust(cl, "ip", "route", "add", "default", "via", lanGW.String())
	l.nsMust(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	switch nat {
	case FullCone:
		l.nsMust(r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
		l.nsMust(r, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-d", c.WANIP.String(),
			"-p", "udp", "-j", "DNAT", "--to-destination", c.IP.String())
	case PortRestricted:
		l.nsMust(r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
	case Symmetric:
		l.nsMust(r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", "--random-fully")
	}
	return c
}

// BlockUDP drops every UDP packet the router would forward, both ways:
// the client has only TCP (and so only TURN over TCP or TLS).
func (c *Client) BlockUDP() {
	c.lab.t.Helper()
	c.lab.nsMust(c.Router, "iptables", "-A", "FORWARD", "-p", "udp", "-j", "DROP")
}

// BlockPort drops the packets the router would forward to or from port
// (of protocol "udp" or "tcp") on any host: e.g. a network that lets only
// TLS on its usual ports out.
func (c *Client) BlockPort(proto string, port int) {
	c.lab.t.Helper()
	p := strconv.Itoa(port)
	c.lab.nsMust(c.Router, "iptables", "-A", "FORWARD", "-p", proto, "--dport", p, "-j", "DROP")
	c.lab.nsMust(c.Router, "iptables", "-A", "FORWARD", "-p", proto, "--sport", p, "-j", "DROP")
}

// Loss drops a random fraction p (0..1) of the packets the router forwards,
// in each direction independently.
func (c *Client) Loss(p float64) {
	c.lab.t.Helper()
	c.lab.nsMust(c.Router, "iptables", "-A", "FORWARD", "-m", "statistic", "--mode", "random",
		"--probability", strconv.FormatFloat(p, 'f', 4, 64), "-j", "DROP")
}

// RateLimit caps the client's link at kbit kbit/s in each direction with a
// token bucket (tbf) on both router interfaces.
func (c *Client) RateLimit(kbit int) {
	c.lab.t.Helper()
	for _, dev := range []string{"wan", "lan"} {
		c.lab.nsMust(c.Router, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
			"rate", fmt.Sprintf("%dkbit", kbit), "burst", "32kbit", "latency", "400ms")
	}
}

// Cut starts an outage: the router forwards nothing, either way, until
// Mend. Rules added before (loss, blocked UDP) stay as they are.
func (c *Client) Cut() {
	c.lab.t.Helper()
	c.lab.nsMust(c.Router, "iptables", "-I", "FORWARD", "1", "-j", "DROP")
}

// Mend ends the outage Cut started.
func (c *Client) Mend() {
	c.lab.t.Helper()
	c.lab.nsMust(c.Router, "iptables", "-D", "FORWARD", "-j", "DROP")
}

// Renumber moves the client to another private address, as a laptop that
// joins another network: its old address is gone (sockets bound to it stop
// working, the router's NAT maps the new one afresh) and c.IP is the new one.
func (c *Client) Renumber() {
	c.lab.t.Helper()
	l, r, cl := c.lab, c.Router, c.NS
	b := c.IP.As4()
	gw := netip.AddrFrom4([4]byte{b[0], b[1], b[2], 1})
	old := c.IP
	b[3]++
	if b[3] == 255 {
		b[3] = 2
	}
	c.IP = netip.AddrFrom4(b)
	// the new address is a secondary of the old one's prefix: keep it when the old one goes
	l.nsMust(cl, "sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1")
	if c.tun { // point to point: the router's side names its peer
		l.nsMust(cl, "ip", "addr", "add", c.IP.String(), "peer", gw.String(), "dev", "eth0")
		l.nsMust(cl, "ip", "addr", "del", old.String(), "peer", gw.String(), "dev", "eth0")
		l.nsMust(cl, "ip", "route", "replace", gw.String()+"/32", "dev", "eth0") // went with the old address
		l.nsMust(r, "ip", "route", "replace", c.IP.String()+"/32", "dev", "lan")
	} else {
		l.nsMust(cl, "ip", "addr", "add", c.IP.String()+"/24", "dev", "eth0")
		l.nsMust(cl, "ip", "addr", "del", old.String()+"/24", "dev", "eth0")
	}
	l.nsMust(cl, "ip", "route", "replace", "default", "via", gw.String())
}

// Command is an exec.Cmd that runs name inside namespace ns.
func Command(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Command runs name inside the client's namespace.
func (c *Client) Command(name string, args ...string) *exec.Cmd { return Command(c.NS, name, args...) }

// Do runs fn on a fresh OS thread switched into namespace ns. Sockets fn
// creates belong to ns and keep working after Do returns; goroutines fn
// starts do not inherit the namespace (run long-lived peers with Command).
// The thread is discarded afterwards rather than switched back.
func Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- fmt.Errorf("netlab: open namespace: %w", err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		_ = f.Close()
		if err != nil {
			errc <- fmt.Errorf("netlab: setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (l *Lab) teardown(hostIf string) {
	for i := l.clients; i >= 1; i-- {
		run("ip", "netns", "del", fmt.Sprintf("%s-c%d", l.prefix, i))
		run("ip", "netns", "del", fmt.Sprintf("%s-r%d", l.prefix, i))
	}
	run("ip", "netns", "del", l.pub)
	run("ip", "link", "del", hostIf) // normally gone with its peer already
}

func (l *Lab) must(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("netlab: %s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

func (l *Lab) nsMust(ns, name string, args ...string) {
	l.t.Helper()
	l.must("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

func run(name string, args ...string) { _ = exec.Command(name, args...).Run() }

// sweep deletes lab namespaces whose creating process is gone.
func sweep(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("netlab: ip netns list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, "pl-")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || alive(pid) {
			continue
		}
		run("ip", "netns", "del", name)
	}
}

// lockFile takes an exclusive flock on path; the returned func releases it.
func lockFile(t testing.TB, path string) func() {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("netlab: lock: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		_ = f.Close()
		t.Fatalf("netlab: lock: %v", err)
	}
	return func() { _ = f.Close() } // closing releases the lock
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// freeSubnet picks a 10.213.P.0/24 that no host route or address covers.
func freeSubnet(t testing.TB) int {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("netlab: ip route: %v", err)
	}
	var routes []netip.Prefix
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unicast" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if dst == "default" {
			continue
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if p, err := netip.ParsePrefix(dst); err == nil {
			routes = append(routes, p)
		}
	}
	b := make([]byte, 1)
	for range 64 {
		_, _ = rand.Read(b)
		n := int(b[0])
		if n < 2 || n > 250 {
			continue
		}
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(n), 0}), 24)
		free := true
		for _, r := range routes {
			if r.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return n
		}
	}
	t.Fatal("netlab: no free 10.213.x.0/24")
	return 0
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
