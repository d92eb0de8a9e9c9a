package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// udpProxy relays UDP between one client and a server address, and can
// cut the path: while cut, packets both ways are dropped.
type udpProxy struct {
	front *net.UDPConn // the client talks to this
	back  *net.UDPConn // connected to the server
	cut   atomic.Bool
	peer  atomic.Pointer[net.UDPAddr] // the client's address
	wg    sync.WaitGroup
}

func newUDPProxy(t *testing.T, server *net.UDPAddr) *udpProxy {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, server)
	if err != nil {
		front.Close()
		t.Fatal(err)
	}
	p := &udpProxy{front: front, back: back}
	p.wg.Add(2)
	go p.up()
	go p.down()
	t.Cleanup(func() { // the relays end when their sockets close
		front.Close()
		back.Close()
		p.wg.Wait()
	})
	return p
}

func (p *udpProxy) up() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := p.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.peer.Store(from)
		if !p.cut.Load() {
			p.back.Write(buf[:n])
		}
	}
}

func (p *udpProxy) down() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, err := p.back.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP port unreachable while nobody listened
		}
		if to := p.peer.Load(); to != nil && !p.cut.Load() {
			p.front.WriteToUDP(buf[:n], to)
		}
	}
}

var candidateLine = regexp.MustCompile(`(?m)^a=(candidate|end-of-candidates).*\r\n`)

// throughProxy makes the server's description name the proxy as its only
// candidate, so that all media goes through it.
func (p *udpProxy) throughProxy(sdp string) string {
	sdp = candidateLine.ReplaceAllString(sdp, "")
	port := p.front.LocalAddr().(*net.UDPAddr).Port
	cand := fmt.Sprintf("a=candidate:1 1 udp 2130706431 127.0.0.1 %d typ host\r\n", port)
	i := strings.Index(sdp, "\r\nm=")
	j := strings.Index(sdp[i+2:], "\r\n") // after the first m= line
	at := i + 2 + j + 2
	return sdp[:at] + cand + sdp[at:]
}

type flowed struct {
	gen int
	at  time.Time
}

// proxiedMember is an sfu member whose media path runs through a proxy
// and that, like parley.js, makes a new connection when the server says
// media-closed.
type proxiedMember struct {
	t     *testing.T
	c     *client.Client
	api   *webrtc.API
	proxy *udpProxy

	mu     sync.Mutex
	pc     *webrtc.PeerConnection
	gen    int
	closed chan time.Time // media-closed arrived
	flow   chan flowed    // the first packet of a track on a connection
}

func (m *proxiedMember) media(d mediaMsg) {
	raw, _ := json.Marshal(d)
	m.c.Send(context.Background(), protocol.Message{Type: protocol.TypeMedia, Data: raw})
}

// connect makes a new connection and offers it (its candidates are not
// sent: the server learns the proxy's address from its checks).
func (m *proxiedMember) connect() {
	pc, err := m.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		m.t.Error(err)
		return
	}
	m.mu.Lock()
	old := m.pc
	m.pc = pc
	m.gen++
	gen := m.gen
	m.mu.Unlock()
	if old != nil {
		old.Close()
	}
	negotiated, id := true, uint16(0)
	if _, err := pc.CreateDataChannel("parley", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id}); err != nil {
		m.t.Error(err)
		return
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		first := true
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			if first {
				first = false
				if pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
					m.t.Logf("gen %d flows on %s", gen, pair)
				}
				m.flow <- flowed{gen, time.Now()}
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(offer)
	}
	if err != nil {
		m.t.Error(err)
		return
	}
	offer.SDP = candidateLine.ReplaceAllString(offer.SDP, "")
	m.media(mediaMsg{SDP: &offer})
}

func (m *proxiedMember) loop() {
	for msg := range m.c.Events() {
		switch msg.Type {
		case protocol.TypeMediaClosed:
			m.closed <- time.Now()
			m.connect()
		case protocol.TypeMedia:
			var d mediaMsg
			json.Unmarshal(msg.Data, &d)
			m.mu.Lock()
			pc := m.pc
			m.mu.Unlock()
			switch {
			case d.Error != nil:
				m.t.Logf("media error %s: %s", d.Error.Code, d.Error.Message)
			case d.SDP != nil && d.SDP.Type == webrtc.SDPTypeOffer:
				d.SDP.SDP = m.proxy.throughProxy(d.SDP.SDP)
				if err := pc.SetRemoteDescription(*d.SDP); err != nil {
					m.t.Logf("server offer: %v", err)
					continue
				}
				ans, _ := pc.CreateAnswer(nil)
				pc.SetLocalDescription(ans)
				ans.SDP = candidateLine.ReplaceAllString(ans.SDP, "") // the server must not reach us around the proxy
				m.media(mediaMsg{SDP: &ans})
			case d.SDP != nil:
				d.SDP.SDP = m.proxy.throughProxy(d.SDP.SDP)
				if err := pc.SetRemoteDescription(*d.SDP); err != nil {
					m.t.Logf("server answer: %v", err)
				}
			}
		}
	}
}

// waitFlow waits for packets on connection gen (or a later one) and
// says when they came.
func (m *proxiedMember) waitFlow(gen int, within time.Duration) time.Time {
	m.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case f := <-m.flow:
			if f.gen >= gen {
				return f.at
			}
		case <-deadline:
			m.t.Fatalf("no media on connection %d", gen)
		}
	}
}

// Row 9: a member's media path is cut for 40 s. The server closes its
// participant when ICE fails (about 30 s), tells it "media-closed", takes
// the offer of its new connection, and media flows again once the path
// is back, without the member leaving the room. Everything waits on
// events (media-closed, the first packet on a connection); the only timer
// is the cut's length.
func TestRow09MediaClosedRebuilt(t *testing.T) {
	if testing.Short() {
		t.Skip("cuts a media path for 40 s")
	}
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	pub := joinSFU(t, srv.URL(), "cut", "pub")
	stop := make(chan struct{})
	defer close(stop)
	go sendKeyframes(stop, pub.publish())

	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	j, err := c.JoinMode(ctx, "cut", "sub", "", "sfu")
	if err != nil {
		t.Fatal(err)
	}
	m := &proxiedMember{t: t, c: c, api: api, proxy: newUDPProxy(t, srv.SFU().UDPAddr().(*net.UDPAddr)),
		closed: make(chan time.Time, 4), flow: make(chan flowed, 16)}
	loopDone := make(chan struct{})
	t.Cleanup(func() {
		c.Close() // ends the loop: no new connection once the test is over
		<-loopDone
		m.mu.Lock()
		defer m.mu.Unlock()
		m.pc.Close()
	})
	go func() {
		defer close(loopDone)
		m.loop()
	}()
	m.connect()
	m.waitFlow(1, 30*time.Second)

	m.proxy.cut.Store(true)
	cutAt := time.Now()
	restore := time.NewTimer(40 * time.Second)
	defer restore.Stop()
	var closedAt time.Time
	select {
	case closedAt = <-m.closed:
	case <-restore.C:
		t.Fatal("no media-closed while the path was cut")
	}
	t.Logf("media-closed %.1f s after the cut", closedAt.Sub(cutAt).Seconds())
	<-restore.C
	restoredAt := time.Now()
	m.proxy.cut.Store(false)
	// The connection made at media-closed may have given up on the cut
	// path (pion stops checking a pair after 7 unanswered requests); the
	// server then closes it too, says media-closed again, and the next
	// one connects: within a server ICE timeout (30 s) of the path's
	// return.
	back := m.waitFlow(2, 60*time.Second)
	if back.Before(restoredAt) {
		t.Fatal("media flowed while the path was cut: the new connection went around the proxy")
	}
	t.Logf("media back %.2f s after the path", back.Sub(restoredAt).Seconds())
	// The member never left: same session, same participant ID.
	if c.Err() != nil {
		t.Fatalf("signaling ended: %v", c.Err())
	}
	room, ok := srv.SFU().LookupRoom(sfu.Calls, "cut")
	if _, in := room.Participant(j.ID); !ok || !in {
		t.Fatal("the member has no participant after the rebuild")
	}
}
