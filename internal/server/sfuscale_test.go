package server_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// sigSizes records the largest signaling messages of a test, per direction.
type sigSizes struct {
	offer, answer atomic.Int64 // largest server offer received, client answer sent
	offerText     atomic.Int64 // the inflated size of the largest offer
	in, out       atomic.Int64 // largest message of any kind, server → client and client → server
	inType        atomic.Value // type of the largest server → client message
	over          atomic.Bool  // the test is ending: members stop reporting errors
}

func storeMax(v *atomic.Int64, n int) bool {
	for {
		old := v.Load()
		if int64(n) <= old {
			return false
		}
		if v.CompareAndSwap(old, int64(n)) {
			return true
		}
	}
}

// scaleMember is a light pion member of a group room: it publishes an
// audio and a video track, answers every server offer and counts the remote
// tracks a packet arrived on.
type scaleMember struct {
	t     *testing.T
	sizes *sigSizes
	c     *client.Client
	id    string
	pc    *webrtc.PeerConnection
	audio *webrtc.TrackLocalStaticRTP
	video *webrtc.TrackLocalStaticRTP

	received atomic.Int64  // remote tracks with at least one packet
	offers   atomic.Int64  // server offers answered
	progress chan struct{} // nudged when received grows
	answered chan struct{} // the server answered the member's offer
	failed   chan string   // media error codes from the server
}

// scaleAPI is a pion API for many members on one machine: Opus and VP8
// only, and no interceptors (they would cost CPU per received packet).
func scaleAPI(t *testing.T) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range []struct {
		p webrtc.RTPCodecParameters
		k webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}, webrtc.RTPCodecTypeAudio},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, webrtc.RTPCodecTypeVideo},
	} {
		if err := m.RegisterCodec(c.p, c.k); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	// A loaded machine can starve a connection for seconds: give ICE time.
	se.SetICETimeouts(time.Minute, 2*time.Minute, 2*time.Second)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}

func joinScale(ctx context.Context, t *testing.T, api *webrtc.API, sizes *sigSizes, url, room, name string) *scaleMember {
	t.Helper()
	c, err := client.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	m := &scaleMember{t: t, sizes: sizes, c: c, pc: pc, progress: make(chan struct{}, 1),
		answered: make(chan struct{}, 1), failed: make(chan string, 4)}
	j, err := c.JoinMode(ctx, room, name, "", "sfu")
	if err != nil {
		t.Fatal(err)
	}
	m.id = j.ID
	m.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", m.id)
	if err != nil {
		t.Fatal(err)
	}
	m.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", m.id)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []webrtc.TrackLocal{m.audio, m.video} {
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		// pion reports a track once its first packet is in.
		m.received.Add(1)
		select {
		case m.progress <- struct{}{}:
		default:
		}
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
		}
	})
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand != nil {
			init := cand.ToJSON()
			m.media(scaleMedia{Candidate: &init})
		}
	})
	joined := time.Now()
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
		if st == webrtc.PeerConnectionStateFailed {
			m.errorf("%s: connection failed after %v", m.id, time.Since(joined).Round(time.Millisecond))
		}
	})
	go m.loop()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	m.sendSDP(offer)
	select {
	case <-m.answered:
	case code := <-m.failed:
		t.Fatalf("%s: offer refused: %s", name, code)
	case <-ctx.Done():
		t.Fatalf("%s: no answer to the first offer", name)
	}
	// One handshake at a time: on a starved machine many at once can time out.
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatalf("%s: never connected", name)
	}
	return m
}

// scaleMedia is a "media" message's data with session descriptions in
// either form.
type scaleMedia struct {
	SDP       *protocol.SDP            `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Error     *protocol.Message        `json:"error,omitempty"`
}

// sendSDP sends a session description in the compact form.
func (m *scaleMember) sendSDP(d webrtc.SessionDescription) {
	z := protocol.DeflateSDP(d.Type.String(), d.SDP)
	m.media(scaleMedia{SDP: &z})
}

func (m *scaleMember) media(d scaleMedia) {
	raw, _ := json.Marshal(d)
	b, _ := json.Marshal(protocol.Message{Type: protocol.TypeMedia, Data: raw})
	if d.SDP != nil && d.SDP.Type == "answer" {
		storeMax(&m.sizes.answer, len(b))
	}
	storeMax(&m.sizes.out, len(b))
	m.c.SendRaw(context.Background(), b)
}

func (m *scaleMember) loop() {
	defer func() { m.errorf("%s: signaling ended: %v", m.id, m.c.Err()) }()
	for msg := range m.c.Events() {
		b, _ := json.Marshal(msg)
		if storeMax(&m.sizes.in, len(b)) {
			m.sizes.inType.Store(msg.Type)
		}
		if msg.Type == protocol.TypeError {
			m.errorf("%s: server error %s: %s", m.id, msg.Code, msg.Message)
		}
		if msg.Type != protocol.TypeMedia {
			continue
		}
		var d scaleMedia
		if err := json.Unmarshal(msg.Data, &d); err != nil {
			m.errorf("media message: %v", err)
			continue
		}
		var sdp webrtc.SessionDescription
		if d.SDP != nil {
			if d.SDP.Deflate == "" {
				m.errorf("%s: server sent plain SDP to a member that deflates", m.id)
			}
			text, err := d.SDP.Text()
			if err != nil {
				m.errorf("%s: server SDP: %v", m.id, err)
				continue
			}
			sdp = webrtc.SessionDescription{Type: webrtc.NewSDPType(d.SDP.Type), SDP: text}
		}
		switch {
		case d.Error != nil:
			m.errorf("%s: media error %s: %s", m.id, d.Error.Code, d.Error.Message)
			select {
			case m.failed <- d.Error.Code:
			default:
			}
		case d.Candidate != nil:
			m.pc.AddICECandidate(*d.Candidate)
		case sdp.Type == webrtc.SDPTypeOffer:
			if storeMax(&m.sizes.offer, len(b)) {
				storeMax(&m.sizes.offerText, len(sdp.SDP))
			}
			if err := m.pc.SetRemoteDescription(sdp); err != nil {
				m.errorf("%s: server offer: %v", m.id, err)
				continue
			}
			ans, err := m.pc.CreateAnswer(nil)
			if err != nil {
				m.errorf("%s: answer: %v", m.id, err)
				continue
			}
			if err := m.pc.SetLocalDescription(ans); err != nil {
				m.errorf("%s: set answer: %v", m.id, err)
				continue
			}
			m.sendSDP(ans)
			m.offers.Add(1)
		case d.SDP != nil:
			if err := m.pc.SetRemoteDescription(sdp); err != nil {
				m.errorf("%s: server answer: %v", m.id, err)
			}
			m.answered <- struct{}{}
		}
	}
}

func (m *scaleMember) errorf(format string, args ...any) {
	if !m.sizes.over.Load() {
		m.t.Errorf(format, args...)
	}
}

// waitReceived waits until the member has a packet on n remote tracks.
func (m *scaleMember) waitReceived(ctx context.Context, n int64) {
	m.t.Helper()
	for m.received.Load() < n {
		select {
		case <-m.progress:
		case code := <-m.failed:
			m.t.Fatalf("%s: media error %s", m.id, code)
		case <-ctx.Done():
			recv := 0
			for _, tr := range m.pc.GetTransceivers() {
				if tr.Direction() == webrtc.RTPTransceiverDirectionRecvonly {
					recv++
				}
			}
			var offered []string
			if rd := m.pc.RemoteDescription(); rd != nil {
				for _, l := range strings.Split(rd.SDP, "\r\n") {
					if strings.HasPrefix(l, "a=msid:") {
						offered = append(offered, strings.TrimPrefix(l, "a=msid:"))
					}
				}
			}
			m.t.Fatalf("%s received %d of %d tracks (signaling %s, connection %s, %d receiving sections, %d offers); offered %v",
				m.id, m.received.Load(), n, m.pc.SignalingState(), m.pc.ConnectionState(), recv, m.offers.Load(), offered)
		}
	}
}

// Opus silence and a tiny VP8 keyframe.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// TestSFURoomFifty fills a group room with 50 pion members, each publishing
// audio and low-rate video, and checks that everyone receives everyone
// while every signaling message stays well under the 64 KiB cap. It logs
// the largest server offer and client answer at 10, 25 and 50 members.
func TestSFURoomFifty(t *testing.T) {
	if testing.Short() {
		t.Skip("50 WebRTC members")
	}
	total := 50
	if s := os.Getenv("PARLEY_SCALE_MEMBERS"); s != "" {
		total, _ = strconv.Atoi(s)
	}
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		// The machine may be loaded far past its cores: keepalive is not
		// what this test is about.
		c.PingInterval = config.Duration(time.Minute)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	api := scaleAPI(t)
	sizes := &sigSizes{}
	defer sizes.over.Store(true)

	var mu sync.Mutex
	var members []*scaleMember
	// The media source: every member sends an Opus silence packet and a
	// VP8 keyframe twice a second (the SFU starts video on a keyframe).
	stop := make(chan struct{})
	var media sync.WaitGroup
	media.Add(1)
	go func() {
		defer media.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for n := uint32(0); ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			ms := append([]*scaleMember(nil), members...)
			mu.Unlock()
			for _, m := range ms {
				m.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: n * 24000}, Payload: opusSilence})
				m.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(n), Timestamp: n * 45000}, Payload: vp8Keyframe})
			}
		}
	}()
	defer func() { close(stop); media.Wait() }()

	for _, checkpoint := range []int{10, 25, 50} {
		if checkpoint > total {
			checkpoint = total
		}
		start := time.Now()
		for len(members) < checkpoint {
			m := joinScale(ctx, t, api, sizes, srv.URL(), "crowd", "m"+strconv.Itoa(len(members)))
			mu.Lock()
			members = append(members, m)
			mu.Unlock()
		}
		for _, m := range members {
			m.waitReceived(ctx, int64(2*(checkpoint-1)))
		}
		t.Logf("%d members (%.1fs): largest server offer %d B (%d B of SDP), client answer %d B; largest message server→client %d B (%v), client→server %d B",
			checkpoint, time.Since(start).Seconds(), sizes.offer.Load(), sizes.offerText.Load(), sizes.answer.Load(), sizes.in.Load(), sizes.inType.Load(), sizes.out.Load())
		if checkpoint == total {
			break
		}
	}
	const limit = 32 << 10
	if in, out := sizes.in.Load(), sizes.out.Load(); in >= limit || out >= limit {
		t.Fatalf("largest signaling message: %d B server→client, %d B client→server; want < %d", in, out, limit)
	}
}
