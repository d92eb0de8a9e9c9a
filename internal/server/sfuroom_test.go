package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// sfuMember is a pion client of an sfu room: it answers the server's
// offers, makes its own when it publishes, and keeps what it receives.
type sfuMember struct {
	t      *testing.T
	c      *client.Client
	id     string
	pc     *webrtc.PeerConnection
	dc     *webrtc.DataChannel
	tracks chan []protocol.Message
	got    chan *webrtc.TrackRemote
	data   chan webrtc.DataChannelMessage
	errs   chan string
	sent   chan struct{} // a server answer arrived
	// refused carries forbidden media errors (a refused part of an
	// offer comes after its answer); events the other server messages
	// (muted, removed, ended, media-closed).
	refused chan *protocol.Message
	events  chan protocol.Message
	packets atomic.Int64           // RTP packets received on all tracks
	answer  atomic.Pointer[string] // the server's last answer
	grants  *protocol.Grants
}

type mediaMsg struct {
	SDP       *webrtc.SessionDescription `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
	Subscribe any                        `json:"subscribe,omitempty"`
	Unmute    any                        `json:"unmute,omitempty"`
	Error     *protocol.Message          `json:"error,omitempty"`
}

func joinSFU(t *testing.T, url, room, name string) *sfuMember {
	t.Helper()
	return joinSFUAs(t, url, room, name, "")
}

// joinSFUAs joins with a token.
func joinSFUAs(t *testing.T, url, room, name, token string) *sfuMember {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialClient(t, url)
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	negotiated, id := true, uint16(0)
	dc, err := pc.CreateDataChannel("parley", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id})
	if err != nil {
		t.Fatal(err)
	}
	m := &sfuMember{t: t, c: c, pc: pc, dc: dc, tracks: make(chan []protocol.Message, 20),
		got: make(chan *webrtc.TrackRemote, 10), data: make(chan webrtc.DataChannelMessage, 10),
		errs: make(chan string, 10), sent: make(chan struct{}, 10),
		refused: make(chan *protocol.Message, 10), events: make(chan protocol.Message, 20)}
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { m.data <- msg })
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		m.got <- tr
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			m.packets.Add(1)
		}
	})
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand != nil {
			init := cand.ToJSON()
			m.media(mediaMsg{Candidate: &init})
		}
	})
	j, err := c.JoinMode(ctx, room, name, token, "sfu")
	if err != nil {
		t.Fatal(err)
	}
	if j.Mode != "sfu" {
		t.Fatalf("room mode %q", j.Mode)
	}
	m.id, m.grants = j.ID, j.Grants
	go m.loop()
	m.offer()
	return m
}

// offer sends a client offer and waits for the answer; on glare (the
// server offered at the same time) the loop has rolled back and answered,
// and the offer is made again, as a polite browser would.
func (m *sfuMember) offer() {
	m.t.Helper()
	for try := 0; try < 5; try++ {
		waitFor(m.t, "stable signaling", func() bool { return m.pc.SignalingState() == webrtc.SignalingStateStable })
		offer, err := m.pc.CreateOffer(nil)
		if err != nil {
			m.t.Fatal(err)
		}
		if err := m.pc.SetLocalDescription(offer); err != nil {
			continue // a server offer got in first
		}
		m.media(mediaMsg{SDP: &offer})
		select {
		case <-m.sent:
			return
		case code := <-m.errs:
			if code != "glare" {
				m.t.Fatalf("offer refused: %s", code)
			}
		case <-time.After(10 * time.Second):
			m.t.Fatal("no answer to the offer")
		}
	}
	m.t.Fatal("offer kept colliding")
}

func (m *sfuMember) media(d mediaMsg) {
	raw, _ := json.Marshal(d)
	m.c.Send(context.Background(), protocol.Message{Type: protocol.TypeMedia, Data: raw})
}

func (m *sfuMember) loop() {
	for msg := range m.c.Events() {
		switch msg.Type {
		case protocol.TypeTracks:
			var list []protocol.Message
			json.Unmarshal(msg.Data, &list)
			select { // tests that do not read the lists must not stall the loop
			case m.tracks <- list:
			default:
			}
		case protocol.TypeMedia:
			var d mediaMsg
			json.Unmarshal(msg.Data, &d)
			switch {
			case d.Error != nil && d.Error.Code == protocol.CodeForbidden:
				m.refused <- d.Error
			case d.Error != nil:
				m.errs <- d.Error.Code
			case d.Candidate != nil:
				m.pc.AddICECandidate(*d.Candidate)
			case d.SDP != nil && d.SDP.Type == webrtc.SDPTypeOffer:
				if m.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
					m.pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
				}
				m.pc.SetRemoteDescription(*d.SDP)
				ans, _ := m.pc.CreateAnswer(nil)
				m.pc.SetLocalDescription(ans)
				m.media(mediaMsg{SDP: &ans})
			case d.SDP != nil:
				m.pc.SetRemoteDescription(*d.SDP)
				m.answer.Store(&d.SDP.SDP)
				m.sent <- struct{}{}
			}
		case protocol.TypeMuted, protocol.TypeRemoved, protocol.TypeEnded, protocol.TypeMediaClosed:
			m.events <- msg
		}
	}
}

// publish adds a VP8 track and offers it once the first exchange is done.
func (m *sfuMember) publish() *webrtc.TrackLocalStaticRTP {
	m.t.Helper()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", m.id)
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := m.pc.AddTrack(track); err != nil {
		m.t.Fatal(err)
	}
	m.offer()
	return track
}

// waitFor checks cond until it holds. The 60 s limit only catches a hang:
// a starved 2-core machine once took more than 15 s to settle a member's
// first negotiation here.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// vp8Keyframe is a minimal VP8 payload descriptor + keyframe header.
var vp8Keyframe = []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00}

func TestSFURoomMediaAndData(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	a := joinSFU(t, srv.URL(), "grp", "a")
	b := joinSFU(t, srv.URL(), "grp", "b")
	c := joinSFU(t, srv.URL(), "grp", "c")
	track := a.publish()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // 30 fps of keyframes: enough to be forwarded at once
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(33 * time.Millisecond):
			}
			track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 7}, Payload: vp8Keyframe})
		}
	}()
	for _, m := range []*sfuMember{b, c} {
		select {
		case tr := <-m.got:
			if tr.Codec().MimeType != webrtc.MimeTypeVP8 {
				t.Fatalf("%s got %s", m.id, tr.Codec().MimeType)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("member never received a's video")
		}
	}
	// The track list names a as the publisher.
	waitFor(t, "tracks message", func() bool {
		select {
		case list := <-b.tracks:
			raw, _ := json.Marshal(list)
			return len(list) == 1 && strings.Contains(string(raw), a.id)
		default:
			return false
		}
	})
	// Data relay: a chat to everyone, a binary chunk to c only.
	waitFor(t, "data channels open", func() bool {
		return a.dc.ReadyState() == webrtc.DataChannelStateOpen && b.dc.ReadyState() == webrtc.DataChannelStateOpen && c.dc.ReadyState() == webrtc.DataChannelStateOpen
	})
	a.dc.SendText(`{"type":"chat","text":"hello group","from":"forged"}`)
	for _, m := range []*sfuMember{b, c} {
		msg := recvData(t, m)
		var chat map[string]string
		json.Unmarshal(msg.Data, &chat)
		if chat["text"] != "hello group" || chat["from"] != a.id {
			t.Fatalf("chat relayed as %s", msg.Data)
		}
	}
	a.dc.Send(append([]byte(c.id), 1, 2, 3))
	msg := recvData(t, c)
	if msg.IsString || string(msg.Data[:16]) != a.id || len(msg.Data) != 19 {
		t.Fatalf("binary relayed as %q", msg.Data)
	}
	select {
	case m := <-b.data:
		t.Fatalf("b got c's message: %q", m.Data)
	case <-time.After(200 * time.Millisecond):
	}
	// Pausing a's video for b is accepted; an unknown track is an error.
	b.media(mediaMsg{Subscribe: map[string]any{"track": "nope", "quality": "low"}})
	if code := <-b.errs; code != "no-such-track" {
		t.Fatalf("unknown track: %s", code)
	}
}

func recvData(t *testing.T, m *sfuMember) webrtc.DataChannelMessage {
	t.Helper()
	select {
	case msg := <-m.data:
		return msg
	case <-time.After(5 * time.Second):
		t.Fatal("no relayed data")
	}
	return webrtc.DataChannelMessage{}
}
