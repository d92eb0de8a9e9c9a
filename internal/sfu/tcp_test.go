package sfu

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestICETCP connects a client over ICE-TCP only, on the same port number
// as the UDP mux.
func TestICETCP(t *testing.T) {
	s, err := New(Config{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", PublicIP: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.TCPAddr().(*net.TCPAddr).Port != s.UDPAddr().(*net.UDPAddr).Port {
		t.Fatalf("tcp %v, udp %v: want the same port", s.TCPAddr(), s.UDPAddr())
	}
	pc := tcpOnlyPC(t)
	if _, err := pc.CreateDataChannel("probe", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	part, err := s.Join(Streams, "tcp", ParticipantOptions{OneShot: true})
	if err != nil {
		t.Fatal(err)
	}
	offer, _ := pc.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	answer, err := part.HandleOffer(ctx, pc.LocalDescription().SDP)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
		pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil || pair.Local.Protocol != webrtc.ICEProtocolTCP {
			t.Fatalf("selected pair %v (%v), want TCP", pair, err)
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("no ICE-TCP connection; answer:\n%s", answer)
	}
}

// stallProxy forwards one ICE-TCP connection between a client and the SFU
// and can stop reading what the SFU sends, like a viewer whose network or
// client stopped: the SFU's writes to it then block (pion's TCP writes
// have no deadline).
type stallProxy struct {
	ln     net.Listener
	target string
	stall  chan struct{}
	conns  chan net.Conn
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, stall: make(chan struct{}), conns: make(chan net.Conn, 16)}
	t.Cleanup(func() {
		ln.Close()
		close(p.conns)
		for c := range p.conns {
			c.Close()
		}
	})
	go p.serve()
	return p
}

func (p *stallProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *stallProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		_ = s.(*net.TCPConn).SetReadBuffer(4096)
		select {
		case p.conns <- c:
		default:
		}
		select {
		case p.conns <- s:
		default:
		}
		go func() { _, _ = io.Copy(s, c) }()
		go func() {
			buf := make([]byte, 1500)
			for {
				select {
				case <-p.stall:
					return // stop reading: the SFU's socket fills up
				default:
				}
				n, err := s.Read(buf)
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

// A viewer over ICE-TCP whose client stops reading does not delay the UDP
// viewers of the same track: they keep getting every packet in order while
// the TCP viewer's sink drops.
func TestStalledTCPViewerDoesNotDelayOthers(t *testing.T) {
	s, err := New(Config{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", PublicIP: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// ~1 MB/s, so the stalled connection's socket buffers fill in seconds.
	pub := newTestPublisher(t, s, "tcp", pubOpts{audio: true, payload: 1100})
	go pub.runFrames(ctx, 30, 30)
	room, _ := s.LookupRoom(Streams, "tcp")
	if n := room.WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("published tracks: %d", n)
	}

	// The TCP viewer reaches the SFU through the proxy.
	proxy := newStallProxy(t, s.TCPAddr().String())
	pc := tcpOnlyPC(t)
	tcpGot := make(chan struct{}, 1)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		go func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				select {
				case tcpGot <- struct{}{}:
				default:
				}
			}
		}()
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	tcpPart, err := s.Join(Streams, "tcp", ParticipantOptions{AutoSubscribe: true, OneShot: true, ReceiveOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	offer, _ := pc.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	answer, err := tcpPart.HandleOffer(ctx, pc.LocalDescription().SDP)
	if err != nil {
		t.Fatal(err)
	}
	sfuPort := strconv.Itoa(s.TCPAddr().(*net.TCPAddr).Port)
	answer = strings.ReplaceAll(answer, " "+sfuPort+" typ host tcptype passive", " "+strconv.Itoa(proxy.port())+" typ host tcptype passive")
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tcpGot:
	case <-ctx.Done():
		t.Fatalf("the TCP viewer got no media; answer:\n%s", answer)
	}

	udp := []*testSubscriber{joinWHEP(t, s, "tcp", QualityHigh), joinWHEP(t, s, "tcp", QualityHigh)}
	for _, v := range udp {
		v.waitFor(30*time.Second, "video", func() bool { return len(v.pkts["video"]) >= 30 })
	}

	// Stall the TCP viewer and wait until its sink is behind (dropping).
	close(proxy.stall)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for tcpPart.Stats().SinkDrops == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("the stalled TCP viewer never fell behind: %+v", tcpPart.Stats())
		case <-tick.C:
		}
	}
	// While it stays stalled, the UDP viewers get the next 30 frames' worth
	// of packets, in order.
	pub.mu.Lock()
	from := pub.counter
	pub.mu.Unlock()
	// (Every packet: loss on a loaded machine is repaired by NACKs, which
	// may reorder, so the check is on the set of payload counters.)
	for i, v := range udp {
		v.waitFor(30*time.Second, "every packet after the stall", func() bool {
			seen := map[uint32]bool{}
			for _, p := range v.pkts["video"] {
				seen[counterOf(p)] = true
			}
			for c := from; c < from+900; c++ {
				if !seen[c] {
					return false
				}
			}
			return true
		})
		t.Logf("UDP viewer %d has every packet of the 30 frames after the stall", i)
	}
}

// tcpOnlyPC is a loopback client that uses ICE-TCP only.
func tcpOnlyPC(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// TestICETCPPortTaken: with TCP port 0 the SFU asks for UDP's port number;
// when another program holds that number for TCP it takes any free port
// instead of failing to start.
func TestICETCPPortTaken(t *testing.T) {
	for try := 0; try < 20; try++ {
		held, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := held.Addr().(*net.TCPAddr).Port
		s, err := New(Config{UDP: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), TCP: "127.0.0.1:0", PublicIP: "127.0.0.1", Logger: testLogger()})
		if err != nil { // another program has that UDP port: try another number
			held.Close()
			continue
		}
		got := s.TCPAddr().(*net.TCPAddr).Port
		s.Close()
		held.Close()
		if got == port || got == 0 {
			t.Fatalf("ICE-TCP on port %d, want a free one other than the held %d", got, port)
		}
		return
	}
	t.Fatal("no TCP port whose number was free for UDP in 20 tries")
}
