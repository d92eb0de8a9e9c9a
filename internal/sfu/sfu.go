// Package sfu is Parley's media plane: one pion PeerConnection per participant,
// published tracks read by exactly one goroutine each and fanned out to
// subscribers' down-tracks through a per-track packet cache, with NACK answers,
// rate-limited keyframe requests, simulcast layer selection and audio-level
// based active-speaker detection.
//
// The package knows nothing of HTTP or WebSocket: signaling layers (WHIP/WHEP
// in internal/whip, the WebSocket session in internal/signal) drive a
// Participant through HandleOffer / HandleAnswer / AddICECandidate and the
// OnLocalOffer / OnICECandidate callbacks.
package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Config configures an SFU.
type Config struct {
	// UDP is the address of the single UDP port all sessions share for ICE
	// (e.g. ":8443"; ":0" picks a free port).
	UDP string
	// TCP is the ICE-TCP listen address; "" or "off" disables ICE-TCP. A port
	// of 0 means "the same port number UDP got" (with UDP on port 0 too, a
	// few UDP ports are tried for one whose number TCP has free), or any
	// free port when TCP has that number taken.
	TCP string
	// PublicIP, when set, is announced as the host candidate address
	// (1:1 NAT). A loopback address also enables loopback candidates, so
	// clients on the same host (tests, benchmarks) can connect.
	PublicIP string
	// Logger receives the SFU's logs; nil means slog.Default().
	Logger *slog.Logger
	// ICEServers, if set, lists STUN/TURN servers for the server's own
	// PeerConnections (rarely needed; clients get theirs from signaling).
	ICEServers func() []webrtc.ICEServer
	// NoBatch sends each UDP datagram with its own system call instead of
	// batching them (sendmmsg); for comparison in benchmarks.
	NoBatch bool
	// OnRoomChange, when set, is told that a room's participants or
	// published tracks changed (a join, a leave, a track published or
	// ended). It runs on the changing goroutine with no lock held and
	// must not block; it may look the room up again.
	OnRoomChange func(ns Namespace, name string)
	// MaxPublishBitrate is the most a publisher is asked to send (REMB,
	// bits per second, all its video); 0 means DefaultMaxPublishBitrate.
	// See feedback.go.
	MaxPublishBitrate uint64
}

// SFU owns the shared pion API, the ICE sockets and the rooms.
type SFU struct {
	cfg     Config
	log     *slog.Logger
	lf      pionLoggerFactory
	api     *webrtc.API // publishers and mixed participants
	viewAPI *webrtc.API // receive-only participants: fewer interceptors, fewer goroutines
	udpConn net.PacketConn
	udpMux  ice.UDPMux
	tcpLn   net.Listener
	tcpMux  ice.TCPMux

	ctx    context.Context
	cancel context.CancelFunc
	loops  sync.WaitGroup // feedbackLoop

	mu     sync.Mutex
	rooms  map[roomKey]*Room
	closed bool

	counters counters
}

// Namespace keeps calls, streams and shows apart: the same name may exist
// in each without their media ever mixing. WHEP reaches only streams.
type Namespace uint8

const (
	Calls   Namespace = iota + 1 // group calls: sfu-mode signaling rooms
	Streams                      // broadcasts: browser, WHIP (WHEP reads only these)
	Shows                        // light-show audio, for the show's screens
)

func (n Namespace) String() string {
	switch n {
	case Calls:
		return "call"
	case Streams:
		return "stream"
	case Shows:
		return "show"
	}
	return "namespace-" + strconv.Itoa(int(n))
}

type roomKey struct {
	ns   Namespace
	name string
}

// counters are the SFU-wide forwarding statistics. Per-packet counters
// belong to each layer and down-track (no core fights over a shared cache
// line per packet); what ended ones counted is kept in ended, and Stats
// adds the live ones to it. The rare events are shared atomics.
type counters struct {
	statsMu    sync.Mutex    // orders retiring a layer or down-track against Stats
	ended      tally         // under statsMu
	nacks      atomic.Uint64 // NACKed packets answered from the cache
	nackMisses atomic.Uint64 // NACKed packets no longer in the cache
	plis       atomic.Uint64 // keyframe requests sent to publishers
	nacksRTX   atomic.Uint64 // of nacks, those sent on an RTX stream
	probes     atomic.Uint64 // padding packets sent to probe a subscriber's link
	padDropped atomic.Uint64 // publishers' padding-only packets not forwarded (per subscriber)
}

// tally sums layers' and down-tracks' counters.
type tally struct {
	received  uint64 // RTP packets read from publishers
	forwarded uint64 // RTP packets written to subscribers
	bytes     uint64 // payload+header bytes written to subscribers
	errors    uint64 // failed writes
	sinkDrops uint64 // packets dropped because a subscriber fell behind
	// fanout[i] counts packets whose fan-out to all subscribers' queues
	// took [2^i, 2^(i+1)) microseconds (bucket 0 also holds < 1 µs).
	fanout [fanoutBuckets]uint64
}

const fanoutBuckets = 24

func (t *tally) addLayer(l *layer) {
	t.received += l.received.Load()
	for i := range l.fanout {
		t.fanout[i] += l.fanout[i].Load()
	}
}

func (t *tally) addSink(st SinkStats) {
	t.forwarded += st.Packets
	t.bytes += st.Bytes
	t.errors += st.Errors
	t.sinkDrops += st.Drops
}

// retireLayer moves an ended layer's counters into the totals.
func (s *SFU) retireLayer(l *layer) {
	c := &s.counters
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	if !l.retired {
		l.retired = true
		c.ended.addLayer(l)
	}
}

// retireDownTrack moves a closed down-track's counters into the totals.
// It comes before the down-track leaves its track's list, so that Stats
// always counts it once: live (in the list) or retired.
func (s *SFU) retireDownTrack(d *downTrack) {
	c := &s.counters
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	if !d.retired {
		d.retired = true
		c.ended.addSink(d.stats())
	}
}

// tcpWriteTimeout bounds one write to an ICE-TCP connection. pion sets no
// deadline, so a client that stops reading would block its writer, and
// closing its connection (DTLS sends an alert first) would hang for good.
const tcpWriteTimeout = 5 * time.Second

// deadlineListener hands out connections whose writes time out.
type deadlineListener struct {
	net.Listener
	timeout time.Duration
}

func (l deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return deadlineConn{c, l.timeout}, nil
}

type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c deadlineConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// udpBufferSize is the requested kernel buffer of the shared UDP socket.
const udpBufferSize = 8 << 20

// New opens the ICE sockets and builds the shared webrtc.API.
func New(cfg Config) (*SFU, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &SFU{cfg: cfg, log: log.With("component", "sfu"), rooms: map[roomKey]*Room{}}
	lf := pionLoggerFactory{log: s.log}
	s.lf = lf

	udpAddr := cfg.UDP
	if udpAddr == "" {
		udpAddr = ":8443"
	}
	conn, ln, err := listenMedia(udpAddr, cfg.TCP)
	if err != nil {
		return nil, err
	}
	if uc, ok := conn.(*net.UDPConn); ok {
		// One socket carries every session: give bursts room (the kernel
		// caps these at net.core.{r,w}mem_max), and send in batches.
		_ = uc.SetReadBuffer(udpBufferSize)
		_ = uc.SetWriteBuffer(udpBufferSize)
		if !cfg.NoBatch {
			conn = newBatchConn(uc)
		}
	}
	s.udpConn = conn
	s.udpMux = webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), conn)

	if ln != nil {
		s.tcpLn = ln
		s.tcpMux = webrtc.NewICETCPMux(lf.NewLogger("tcpmux"), deadlineListener{ln, tcpWriteTimeout}, 64)
	}

	api, err := s.buildAPI(lf, false)
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	viewAPI, err := s.buildAPI(lf, true)
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	s.api, s.viewAPI = api, viewAPI
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		s.feedbackLoop(s.ctx)
	}()
	s.log.Info("sfu listening", "udp", conn.LocalAddr().String(), "tcp", s.tcpAddrString(), "public_ip", cfg.PublicIP)
	return s, nil
}

// listenMedia opens the UDP socket and, unless tcp is "" or "off", the
// ICE-TCP listener. A TCP port of 0 takes UDP's port number. When TCP has
// that number taken and UDP's port was the kernel's pick too (port 0), it
// tries other UDP ports a few times before settling for any free TCP port.
func listenMedia(udp, tcp string) (net.PacketConn, net.Listener, error) {
	const tries = 8
	_, udpPort, _ := net.SplitHostPort(udp)
	for i := 0; ; i++ {
		conn, err := net.ListenPacket("udp", udp)
		if err != nil {
			return nil, nil, fmt.Errorf("sfu: listen udp %s: %w", udp, err)
		}
		if tcp == "" || tcp == "off" {
			return conn, nil, nil
		}
		same, err := sameTCPPort(tcp, conn.LocalAddr())
		if err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", same)
		if err != nil && same != tcp && errors.Is(err, syscall.EADDRINUSE) {
			if udpPort == "0" && i < tries {
				_ = conn.Close() // another UDP port, whose number TCP may have free
				continue
			}
			ln, err = net.Listen("tcp", tcp) // any free port
		}
		if err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("sfu: listen tcp %s: %w", same, err)
		}
		return conn, ln, nil
	}
}

func sameTCPPort(tcp string, udp net.Addr) (string, error) {
	host, port, err := net.SplitHostPort(tcp)
	if err != nil {
		return "", fmt.Errorf("sfu: tcp address %q: %w", tcp, err)
	}
	if port == "0" {
		if ua, ok := udp.(*net.UDPAddr); ok {
			port = strconv.Itoa(ua.Port)
		}
	}
	return net.JoinHostPort(host, port), nil
}

func (s *SFU) tcpAddrString() string {
	if s.tcpLn == nil {
		return "off"
	}
	return s.tcpLn.Addr().String()
}

// buildAPI makes a pion API on the shared sockets. A receive-only API
// (viewers) only sends: it needs sender reports but no NACK generator,
// receiver reports or TWCC feedback, which would each cost a goroutine and
// a timer per viewer.
func (s *SFU) buildAPI(lf pionLoggerFactory, receiveOnly bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me); err != nil {
		return nil, fmt.Errorf("sfu: media engine: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := registerInterceptors(me, ir, receiveOnly); err != nil {
		return nil, fmt.Errorf("sfu: interceptors: %w", err)
	}

	se, err := s.settingEngine(lf, true, s.tcpMux != nil)
	if err != nil {
		return nil, err
	}
	return webrtc.NewAPI(
		webrtc.WithMediaEngine(me),
		webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(se),
	), nil
}

// settingEngine is the ICE and DTLS setup every server PeerConnection
// shares: the SFU's sockets (UDP, ICE-TCP, or both), no mDNS, passive TCP
// only, the public IP announced.
func (s *SFU) settingEngine(lf pionLoggerFactory, udp, tcp bool) (webrtc.SettingEngine, error) {
	se := webrtc.SettingEngine{LoggerFactory: lf}
	var networks []webrtc.NetworkType
	if udp {
		se.SetICEUDPMux(s.udpMux)
		networks = append(networks, webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6)
	}
	if tcp {
		se.SetICETCPMux(s.tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(networks)
	se.SetSRTPProtectionProfiles(
		dtls.SRTP_AEAD_AES_128_GCM,
		dtls.SRTP_AES128_CM_HMAC_SHA1_80,
	)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.DisableActiveTCP(true)
	if ip := s.cfg.PublicIP; ip != "" {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			return se, fmt.Errorf("sfu: public IP %q is not an IP address", ip)
		}
		se.SetNAT1To1IPs([]string{ip}, webrtc.ICECandidateTypeHost)
		if parsed.IsLoopback() {
			se.SetIncludeLoopbackCandidate(true)
		}
	}
	return se, nil
}

// UDPAddr is the address of the shared ICE UDP socket.
func (s *SFU) UDPAddr() net.Addr { return s.udpConn.LocalAddr() }

// TCPAddr is the ICE-TCP listen address, or nil when ICE-TCP is off.
func (s *SFU) TCPAddr() net.Addr {
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

// ErrClosed is returned for operations on a closed SFU, room or participant.
var ErrClosed = errors.New("sfu: closed")

// Room returns the room with this name in namespace ns, creating it if
// needed.
func (s *SFU) Room(ns Namespace, name string) (*Room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	k := roomKey{ns, name}
	if r, ok := s.rooms[k]; ok {
		return r, nil
	}
	r := newRoom(s, ns, name)
	s.rooms[k] = r
	return r, nil
}

// LookupRoom returns an existing room of namespace ns.
func (s *SFU) LookupRoom(ns Namespace, name string) (*Room, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[roomKey{ns, name}]
	return r, ok
}

// Rooms returns the rooms of namespace ns.
func (s *SFU) Rooms(ns Namespace) []*Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Room
	for k, r := range s.rooms {
		if k.ns == ns {
			out = append(out, r)
		}
	}
	return out
}

// removeRoomIfEmpty forgets r once its last participant and publication
// left.
func (s *SFU) removeRoomIfEmpty(r *Room) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := roomKey{r.ns, r.name}
	if s.rooms[k] == r && r.empty() {
		delete(s.rooms, k)
		r.close()
	}
}

// Close ends every participant and releases the ICE sockets.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	rooms := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.rooms = map[roomKey]*Room{}
	s.mu.Unlock()

	for _, r := range rooms {
		for _, p := range r.Participants() {
			p.Close()
		}
		r.close()
	}
	s.cancel()
	s.loops.Wait()
	s.closeSockets()
	return nil
}

func (s *SFU) closeSockets() {
	if s.udpMux != nil {
		_ = s.udpMux.Close()
	}
	if s.udpConn != nil {
		_ = s.udpConn.Close()
	}
	if s.tcpMux != nil {
		_ = s.tcpMux.Close()
	}
	if s.tcpLn != nil {
		_ = s.tcpLn.Close()
	}
}

// Stats is a snapshot of the SFU's state and counters.
type Stats struct {
	Rooms        int    `json:"rooms"`
	Participants int    `json:"participants"`
	Tracks       int    `json:"tracks"`        // published tracks (a simulcast track counts once)
	DownTracks   int    `json:"down_tracks"`   // subscriptions
	Received     uint64 `json:"received"`      // RTP packets read from publishers
	Forwarded    uint64 `json:"forwarded"`     // RTP packets written to subscribers
	Bytes        uint64 `json:"bytes"`         // bytes written to subscribers (RTP header + payload)
	Dropped      uint64 `json:"dropped"`       // packets that failed to be written
	SinkDrops    uint64 `json:"sink_drops"`    // packets dropped because a subscriber fell behind
	NACKAnswered uint64 `json:"nack_answered"` // retransmissions served from the packet cache
	NACKMissed   uint64 `json:"nack_missed"`   // NACKed packets already gone from the cache
	PLIs         uint64 `json:"plis"`          // keyframe requests sent to publishers
	NACKOnRTX    uint64 `json:"nack_on_rtx"`   // of NACKAnswered, sent on the subscriber's RTX stream
	Probes       uint64 `json:"probes"`        // padding packets sent to probe subscribers' links
	// PaddingDropped counts publishers' padding-only packets not
	// forwarded, once per subscriber.
	PaddingDropped uint64 `json:"padding_dropped"`
	// FanOutHist[i] counts published packets whose hand-off to every
	// subscriber's queue took [2^i, 2^(i+1)) µs.
	FanOutHist []uint64 `json:"fanout_hist_log2_us"`
}

// FanOutQuantile estimates the q-quantile (0..1) of the per-packet fan-out
// time, in microseconds, from a FanOutHist (or the difference of two): the
// upper bound of the bucket holding it.
func FanOutQuantile(hist []uint64, q float64) float64 {
	var total uint64
	for _, n := range hist {
		total += n
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var acc uint64
	for i, n := range hist {
		acc += n
		if acc > want || acc == total {
			return float64(uint64(1) << (i + 1))
		}
	}
	return float64(uint64(1) << len(hist))
}

// Stats returns a snapshot of rooms, participants, tracks and counters:
// the totals of what has ended plus every live layer's and subscription's
// own counters.
func (s *SFU) Stats() Stats {
	s.mu.Lock()
	rooms := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()

	c := &s.counters
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	st := Stats{Rooms: len(rooms), NACKAnswered: c.nacks.Load(), NACKMissed: c.nackMisses.Load(), PLIs: c.plis.Load(),
		NACKOnRTX: c.nacksRTX.Load(), Probes: c.probes.Load(), PaddingDropped: c.padDropped.Load()}
	t := c.ended
	for _, r := range rooms {
		st.Participants += len(r.Participants())
		for _, u := range r.tracks() {
			st.Tracks++
			for _, l := range *u.layersPtr.Load() {
				if !l.retired {
					t.addLayer(l)
				}
			}
			for _, d := range u.subs.load() {
				if !d.retired {
					st.DownTracks++
					t.addSink(d.stats())
				}
			}
		}
	}
	st.Received, st.Forwarded, st.Bytes, st.Dropped, st.SinkDrops = t.received, t.forwarded, t.bytes, t.errors, t.sinkDrops
	st.FanOutHist = append([]uint64(nil), t.fanout[:]...)
	return st
}
