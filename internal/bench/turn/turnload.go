// Package turn (internal/bench/turn, imported as turnload) is a load generator for a TURN server: it opens K
// allocations on loopback, binds each to a local UDP peer, pushes
// ChannelData at a fixed packet rate for a bounded time, and reports loss,
// achieved rate and the server's CPU time per million relayed packets.
//
// It starts no server itself; point it at one (in-process or another
// process, given its pid for CPU accounting). All traffic stays on the
// addresses it is given, normally 127.0.0.1.
package turn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/parley/parley/internal/auth"

	"github.com/parley/parley/internal/bench/proc"
	"github.com/parley/parley/internal/udpbatch"
)

// Options describe one load run. Zero values take the defaults noted.
type Options struct {
	Server      string        `json:"server"`           // TURN server UDP host:port
	Secret      string        `json:"secret"`           // TURN REST shared secret
	PID         int           `json:"pid,omitempty"`    // server pid for CPU; 0 = this process (in-process server)
	Allocations int           `json:"allocations"`      // K allocations, one user each; default 16
	Rate        int           `json:"rate"`             // packets/s the clients send in total; default 50000
	Size        int           `json:"size"`             // payload bytes; default 100
	Duration    time.Duration `json:"duration"`         // sending time; default 5s, at most 60s
	Echo        bool          `json:"echo"`             // peer echoes: every packet is relayed twice
	PeerIP      string        `json:"peer_ip"`          // peer bind address; default loopback of the server's family
	User        string        `json:"user,omitempty"`   // user name prefix; default "turnload"
	Settle      time.Duration `json:"settle,omitempty"` // wait for stragglers after sending; default 500ms
}

// Result is what a run measured.
type Result struct {
	Options         Options       `json:"options"`
	Sent            uint64        `json:"sent"`                    // ChannelData packets the clients sent
	PeerReceived    uint64        `json:"peer_received"`           // of those, arrived at the peer
	ClientReceived  uint64        `json:"client_received"`         // echoes back at the clients (Echo only)
	LossPercent     float64       `json:"loss_percent"`            // end to end: 100 * (1 - delivered/sent)
	Elapsed         time.Duration `json:"elapsed"`                 // actual sending time
	SendPPS         float64       `json:"send_pps"`                // achieved client send rate
	RelayedPPS      float64       `json:"relayed_pps"`             // packets through the relay, both directions, per second
	ServerCPU       float64       `json:"server_cpu_seconds"`      // user + system
	ServerSysCPU    float64       `json:"server_sys_cpu_seconds"`  // of which in the kernel (syscalls, loopback delivery)
	CPUPerMillion   float64       `json:"cpu_seconds_per_million"` // ServerCPU per million relayed packets
	CPUInProcess    bool          `json:"cpu_in_process"`          // ServerCPU includes this generator
	LoadCPU         float64       `json:"load_cpu_seconds,omitempty"`
	HostBusyCPU     float64       `json:"host_busy_cpu_seconds"` // all CPUs, all processes: shows contention
	UDPRcvbufErrors uint64        `json:"udp_rcvbuf_errors"`     // host-wide kernel drops during the run
	UDPSndbufErrors uint64        `json:"udp_sndbuf_errors"`
}

var magic = [4]byte{'T', 'L', 'D', '1'}

const batch = 64

func (o Options) withDefaults() (Options, error) {
	if o.Server == "" || o.Secret == "" {
		return o, errors.New("turnload: server and secret are required")
	}
	def := func(v *int, d, limit int) {
		if *v <= 0 {
			*v = d
		}
		*v = min(*v, limit)
	}
	def(&o.Allocations, 16, 1000)
	def(&o.Rate, 50000, 2_000_000)
	def(&o.Size, 100, 1400)
	o.Size = max(o.Size, len(magic))
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	o.Duration = min(o.Duration, time.Minute)
	if o.Settle <= 0 {
		o.Settle = 500 * time.Millisecond
	}
	o.Settle = min(o.Settle, 5*time.Second)
	if o.User == "" {
		o.User = "turnload"
	}
	return o, nil
}

// run holds the sockets and counters of one Run.
type run struct {
	opt       Options
	peer      *net.UDPConn
	allocs    []*allocation
	sent      atomic.Uint64
	peerRecv  atomic.Uint64
	clientRcv atomic.Uint64
	wg        sync.WaitGroup
}

// Run executes one load run against opt.Server. It returns an error if the
// allocations cannot be set up; loss is a measurement, not an error.
func Run(ctx context.Context, opt Options) (Result, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return Result{}, err
	}
	r := &run{opt: opt}
	defer r.close()
	if err := r.setup(); err != nil {
		return Result{Options: opt}, err
	}
	r.startReaders()
	return r.measure(ctx)
}

func (r *run) setup() error {
	server, err := net.ResolveUDPAddr("udp", r.opt.Server)
	if err != nil {
		return fmt.Errorf("turnload: server address: %w", err)
	}
	peerIP := r.opt.PeerIP
	if peerIP == "" {
		peerIP = "127.0.0.1"
		if server.IP.To4() == nil {
			peerIP = "::1"
		}
	}
	r.peer, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(peerIP)})
	if err != nil {
		return fmt.Errorf("turnload: peer socket: %w", err)
	}
	setBuffers(r.peer)
	peer := r.peer.LocalAddr().(*net.UDPAddr).AddrPort()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	secret := []byte(r.opt.Secret)
	ttl := r.opt.Duration + r.opt.Settle + time.Minute
	for k := range r.opt.Allocations {
		c := auth.NewTURNCredential(secret, r.opt.User+"-"+strconv.Itoa(k), ttl, time.Now())
		a, err := allocate(server, c.Username, c.Password, peer)
		if err != nil {
			return fmt.Errorf("turnload: allocation %d: %w", k, err)
		}
		r.allocs = append(r.allocs, a)
	}
	return nil
}

// close releases the allocations and stops the readers.
func (r *run) close() {
	for _, a := range r.allocs {
		a.release()
	}
	if r.peer != nil {
		_ = r.peer.Close()
	}
	r.wg.Wait()
}

// measure sends for the configured time, waits for stragglers, and turns
// the counters and CPU readings into a Result.
func (r *run) measure(ctx context.Context) (Result, error) {
	res := Result{Options: r.opt, CPUInProcess: r.opt.PID == 0}
	cpu0, err := proc.ReadCPU(r.opt.PID)
	if err != nil {
		return res, err
	}
	self0, _ := proc.ReadCPU(0)
	rcv0, snd0 := udpErrors()
	host0 := proc.HostBusySeconds()
	res.Elapsed, err = r.send(ctx)
	if err != nil {
		return res, err
	}
	r.settle(ctx)
	cpu1, err := proc.ReadCPU(r.opt.PID)
	if err != nil {
		return res, err
	}
	self1, _ := proc.ReadCPU(0)
	rcv1, snd1 := udpErrors()
	res.HostBusyCPU = proc.HostBusySeconds() - host0
	res.ServerCPU = cpu1.Total() - cpu0.Total()
	res.ServerSysCPU = cpu1.Sys - cpu0.Sys
	if r.opt.PID != 0 {
		res.LoadCPU = self1.Total() - self0.Total()
	}
	res.UDPRcvbufErrors, res.UDPSndbufErrors = rcv1-rcv0, snd1-snd0
	r.fill(&res)
	return res, nil
}

func (r *run) fill(res *Result) {
	res.Sent, res.PeerReceived, res.ClientReceived = r.sent.Load(), r.peerRecv.Load(), r.clientRcv.Load()
	delivered := res.PeerReceived
	if r.opt.Echo {
		delivered = res.ClientReceived
	}
	if res.Sent > 0 {
		res.LossPercent = 100 * (1 - float64(delivered)/float64(res.Sent))
	}
	secs := res.Elapsed.Seconds()
	relayed := res.PeerReceived + res.ClientReceived
	if secs > 0 {
		res.SendPPS = float64(res.Sent) / secs
		res.RelayedPPS = float64(relayed) / secs
	}
	if relayed > 0 {
		res.CPUPerMillion = res.ServerCPU / (float64(relayed) / 1e6)
	}
}

// settle waits until everything sent has arrived or Settle has passed.
func (r *run) settle(ctx context.Context) {
	deadline := time.Now().Add(r.opt.Settle)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := r.peerRecv.Load() >= r.sent.Load()
		if r.opt.Echo {
			done = r.clientRcv.Load() >= r.sent.Load()
		}
		if done {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// send paces ChannelData at opt.Rate: it tops up to rate*elapsed in chunks
// of up to 64 packets (one sendmmsg), rotating over the allocations.
func (r *run) send(ctx context.Context) (time.Duration, error) {
	frame := channelFrame(r.opt.Size)
	conns := make([]udpbatch.ReadWriter, len(r.allocs))
	for i, a := range r.allocs {
		conns[i] = udpbatch.NewConn(a.conn)
	}
	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{frame}
	}
	start := time.Now()
	var sent int64
	for k := 0; ; k = (k + 1) % len(conns) {
		el := time.Since(start)
		if el >= r.opt.Duration || ctx.Err() != nil {
			return el, nil
		}
		due := int64(el.Seconds()*float64(r.opt.Rate)) - sent
		if due <= 0 {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		n, err := writeAll(conns[k], msgs[:min(due, batch)])
		sent += int64(n)
		r.sent.Add(uint64(n))
		if err != nil {
			return time.Since(start), fmt.Errorf("turnload: send: %w", err)
		}
	}
}

// channelFrame is a ChannelData message for channelNumber carrying size
// bytes that start with magic.
func channelFrame(size int) []byte {
	f := make([]byte, 4+size)
	f[0], f[1] = channelNumber>>8, channelNumber&0xff
	f[2], f[3] = byte(size>>8), byte(size)
	copy(f[4:], magic[:])
	return f
}

func writeAll(c udpbatch.ReadWriter, ms []ipv4.Message) (int, error) {
	done := 0
	for done < len(ms) {
		n, err := c.WriteBatch(ms[done:], 0)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}
