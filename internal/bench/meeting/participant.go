package meeting

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/bench/synth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// newAPI is every participant's pion API: VP8 + Opus, pion's default
// interceptors (what a browser's RTCP looks like to the server),
// loopback-only ICE.
func newAPI() (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}, {Type: "goog-remb"}, {Type: "transport-cc"}}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb},
		PayloadType:        96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("meeting: register VP8: %w", err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "transport-cc"}}},
		PayloadType: 111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("meeting: register Opus: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, fmt.Errorf("meeting: interceptors: %w", err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// A stamp ends every packet payload that has room for it: a magic byte,
// the publisher's index, the kind, and the send time (ns since the run's
// epoch). Video stamps sit at the end of a packet, past the VP8 payload
// descriptor and frame header.
const (
	stampLen   = 12
	stampMagic = 0xb7
	minStamped = 32 // smaller video packets (a frame's tail) go unstamped
)

func putStamp(p []byte, pub, kind int, at int64) {
	s := p[len(p)-stampLen:]
	s[0] = stampMagic
	binary.BigEndian.PutUint16(s[1:], uint16(pub))
	s[3] = byte(kind)
	binary.BigEndian.PutUint64(s[4:], uint64(at))
}

func readStamp(p []byte) (pub, kind int, at int64, ok bool) {
	if len(p) < stampLen {
		return 0, 0, 0, false
	}
	s := p[len(p)-stampLen:]
	if s[0] != stampMagic {
		return 0, 0, 0, false
	}
	return int(binary.BigEndian.Uint16(s[1:])), int(s[3]), int64(binary.BigEndian.Uint64(s[4:])), true
}

type mediaMsg struct {
	SDP       *webrtc.SessionDescription `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
	Error     *protocol.Message          `json:"error,omitempty"`
}

// participant is one member of the meeting.
type participant struct {
	idx       int
	c         *client.Client
	pc        *webrtc.PeerConnection
	epoch     time.Time
	sent      atomic.Int64
	measuring atomic.Bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	answered  chan error

	mu   sync.Mutex
	subs []*rxStream
}

// rxStream is what a participant received of one track.
type rxStream struct {
	kind    int // 0 video, 1 audio
	pub     int // -1 until a stamp names the publisher
	started bool
	first   int64
	ext     int64
	recv    int64
	lat     []float64
}

type snap struct{ ext, recv int64 }

func join(ctx context.Context, api *webrtc.API, o Options, idx int, epoch time.Time) (*participant, error) {
	jctx, jcancel := context.WithTimeout(ctx, 20*time.Second)
	defer jcancel()
	c, err := client.Dial(jctx, o.nodeURL(idx), nil)
	if err != nil {
		return nil, err
	}
	p := &participant{idx: idx, c: c, epoch: epoch, answered: make(chan error, 1)}
	var pctx context.Context
	pctx, p.cancel = context.WithCancel(ctx)
	fail := func(err error) (*participant, error) {
		p.close()
		return nil, err
	}
	if p.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fail(err)
	}
	negotiated, id := true, uint16(0)
	if _, err := p.pc.CreateDataChannel("parley", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id}); err != nil {
		return fail(err)
	}
	p.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { p.read(tr) })
	stream := fmt.Sprintf("p%d", idx)
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", stream)
	if err != nil {
		return fail(err)
	}
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", stream)
	if err != nil {
		return fail(err)
	}
	for _, tr := range []webrtc.TrackLocal{video, audio} {
		t, err := p.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
		if err != nil {
			return fail(err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				if _, _, err := t.Sender().ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}
	j, err := c.JoinMode(jctx, o.Room, stream, o.Token, "sfu")
	if err != nil {
		return fail(err)
	}
	if j.Mode != "sfu" {
		return fail(fmt.Errorf("room %s is %q, not sfu", o.Room, j.Mode))
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.loop(pctx) }()

	// The first offer carries every candidate; the server makes no offer
	// before answering it.
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-jctx.Done():
		return fail(jctx.Err())
	}
	p.media(pctx, mediaMsg{SDP: p.pc.LocalDescription()})
	select {
	case err := <-p.answered:
		if err != nil {
			return fail(err)
		}
	case <-jctx.Done():
		return fail(errors.New("no answer to the first offer"))
	}
	g, err := synth.NewVP8(o.VideoBitrate, 30, 60)
	if err != nil {
		return fail(err)
	}
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.sendVideo(pctx, video, g) }()
	go func() { defer p.wg.Done(); p.sendAudio(pctx, audio) }()
	return p, nil
}

func (p *participant) media(ctx context.Context, d mediaMsg) {
	raw, _ := json.Marshal(d)
	_ = p.c.Send(ctx, protocol.Message{Type: protocol.TypeMedia, Data: raw})
}

// loop answers the server's offers and applies its answer and candidates.
func (p *participant) loop(ctx context.Context) {
	first := true
	for {
		var msg protocol.Message
		var ok bool
		select {
		case <-ctx.Done():
			return
		case msg, ok = <-p.c.Events():
			if !ok {
				return
			}
		}
		if msg.Type != protocol.TypeMedia {
			continue
		}
		var d mediaMsg
		if json.Unmarshal(msg.Data, &d) != nil {
			continue
		}
		switch {
		case d.Error != nil:
			if first {
				first = false
				p.answered <- fmt.Errorf("offer refused: %s", d.Error.Code)
			}
		case d.Candidate != nil:
			_ = p.pc.AddICECandidate(*d.Candidate)
		case d.SDP != nil && d.SDP.Type == webrtc.SDPTypeOffer:
			if err := p.pc.SetRemoteDescription(*d.SDP); err != nil {
				continue
			}
			ans, err := p.pc.CreateAnswer(nil)
			if err != nil {
				continue
			}
			if err := p.pc.SetLocalDescription(ans); err != nil {
				continue
			}
			p.media(ctx, mediaMsg{SDP: &ans})
		case d.SDP != nil:
			err := p.pc.SetRemoteDescription(*d.SDP)
			if first {
				first = false
				p.answered <- err
			}
		}
	}
}

func (p *participant) now() int64 { return int64(time.Since(p.epoch)) }

// sendVideo sends synthetic VP8 at 30 fps, every packet stamped that has
// room for it.
func (p *participant) sendVideo(ctx context.Context, tr *webrtc.TrackLocalStaticRTP, g *synth.VP8) {
	pz := rtp.NewPacketizer(1200, 96, 1, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	tk := time.NewTicker(time.Second / 30)
	defer tk.Stop()
	for i := 0; ; i++ {
		for _, pkt := range pz.Packetize(g.Frame(i), 3000) {
			if len(pkt.Payload) >= minStamped {
				putStamp(pkt.Payload, p.idx, 0, p.now())
			}
			if tr.WriteRTP(pkt) == nil {
				p.sent.Add(1)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// sendAudio sends 20 ms Opus packets: a silence TOC byte and the stamp.
func (p *participant) sendAudio(ctx context.Context, tr *webrtc.TrackLocalStaticRTP) {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	seq := uint16(time.Now().UnixNano())
	for i := uint32(0); ; i++ {
		payload := make([]byte, 3+stampLen)
		payload[0], payload[1], payload[2] = 0xf8, 0xff, 0xfe
		putStamp(payload, p.idx, 1, p.now())
		if tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: i * 960}, Payload: payload}) == nil {
			p.sent.Add(1)
		}
		seq++
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// read is a received track's only reader.
func (p *participant) read(tr *webrtc.TrackRemote) {
	s := &rxStream{pub: -1}
	if tr.Kind() == webrtc.RTPCodecTypeAudio {
		s.kind = 1
	}
	p.mu.Lock()
	p.subs = append(p.subs, s)
	p.mu.Unlock()
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := p.now()
		hl, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		end := n
		if h.Padding && n > hl {
			end -= int(buf[n-1])
		}
		if end < hl {
			continue
		}
		pub, kind, at, stamped := readStamp(buf[hl:end])
		// An unstamped frame tail may end in the magic byte by chance.
		stamped = stamped && kind == s.kind && at > 0 && at <= now
		measuring := p.measuring.Load()
		p.mu.Lock()
		if stamped && s.pub < 0 {
			s.pub = pub
		}
		if !s.started {
			s.started, s.ext, s.first = true, int64(h.SequenceNumber), int64(h.SequenceNumber)
		} else if d := int16(h.SequenceNumber - uint16(s.ext)); d > 0 {
			s.ext += int64(d)
		}
		s.recv++
		if measuring && stamped {
			s.lat = append(s.lat, float64(now-at)/1e6)
		}
		p.mu.Unlock()
	}
}

// flowing counts the subscriptions that have named their publisher.
func (p *participant) flowing() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.subs {
		if s.pub >= 0 && s.pub != p.idx {
			n++
		}
	}
	return n
}

func (p *participant) snapshot(out map[subKey]snap) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.subs {
		if s.pub < 0 {
			continue
		}
		k := subKey{sub: p.idx, pub: s.pub, kind: s.kind}
		cur := out[k]
		cur.ext += s.ext - s.first + 1
		cur.recv += s.recv
		out[k] = cur
	}
}

func (p *participant) latencies() []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []float64
	for _, s := range p.subs {
		out = append(out, s.lat...)
	}
	return out
}

func (p *participant) close() {
	if p.cancel != nil {
		p.cancel()
	}
	if p.pc != nil {
		_ = p.pc.Close()
	}
	_ = p.c.Close()
	p.wg.Wait()
}
