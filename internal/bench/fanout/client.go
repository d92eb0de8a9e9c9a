package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/parley/parley/internal/bench/synth"
	"github.com/parley/parley/pkg/whip"
)

type apiT = *webrtc.API

// clientAPIs builds the publisher's and the viewers' pion APIs: VP8 + Opus,
// loopback-only ICE over UDP (tcpView: over TCP, for stalled viewers).
// With h264Fmtp the viewers also take H.264 with that format line (an
// RTMP source's video).
// The publisher answers the server's NACKs and sends sender reports;
// viewers run pion's default interceptors (NACK generator, receiver
// reports, TWCC feedback) as a browser sends them, or with bare only
// generate NACKs.
func clientAPIs(bare bool, h264Fmtp string) (pub, view, tcpView apiT, err error) {
	build := func(viewer, tcp bool) (apiT, error) {
		me := &webrtc.MediaEngine{}
		fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb},
			PayloadType:        96,
		}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("fanout: register VP8: %w", err)
		}
		if viewer && h264Fmtp != "" {
			if err := me.RegisterCodec(webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: h264Fmtp, RTCPFeedback: fb},
				PayloadType:        102,
			}, webrtc.RTPCodecTypeVideo); err != nil {
				return nil, fmt.Errorf("fanout: register H.264: %w", err)
			}
		}
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
			PayloadType:        111,
		}, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("fanout: register Opus: %w", err)
		}
		ir := &interceptor.Registry{}
		if viewer && !bare {
			if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
				return nil, fmt.Errorf("fanout: interceptors: %w", err)
			}
		} else if viewer {
			gen, err := nack.NewGeneratorInterceptor()
			if err != nil {
				return nil, fmt.Errorf("fanout: nack: %w", err)
			}
			ir.Add(gen)
		} else {
			resp, err := nack.NewResponderInterceptor()
			if err != nil {
				return nil, fmt.Errorf("fanout: nack responder: %w", err)
			}
			ir.Add(resp)
			sr, err := report.NewSenderInterceptor()
			if err != nil {
				return nil, fmt.Errorf("fanout: reports: %w", err)
			}
			ir.Add(sr)
		}
		se := webrtc.SettingEngine{}
		se.SetIncludeLoopbackCandidate(true)
		if tcp {
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
		} else {
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		}
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
	}
	if pub, err = build(false, false); err != nil {
		return nil, nil, nil, err
	}
	if view, err = build(true, false); err != nil {
		return nil, nil, nil, err
	}
	if tcpView, err = build(true, true); err != nil {
		return nil, nil, nil, err
	}
	return pub, view, tcpView, nil
}

// frameSource returns video frame i.
type frameSource func(i int) []byte

// videoSource loops an IVF file's frames, or without one makes synthetic
// VP8 at bitrate bits/s (0: 1 Mbit/s), 30 fps, a keyframe every 2 s.
func videoSource(ivf []byte, bitrate int) (frameSource, error) {
	if ivf != nil {
		frames, err := readIVF(ivf)
		if err != nil {
			return nil, err
		}
		return func(i int) []byte { return frames[i%len(frames)] }, nil
	}
	g, err := synth.NewVP8(bitrate, 30, 60)
	if err != nil {
		return nil, err
	}
	return g.Frame, nil
}

// readIVF loads all frames of an IVF file.
func readIVF(b []byte) ([][]byte, error) {
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("fanout: ivf: %w", err)
	}
	if hdr.FourCC != "VP80" {
		return nil, fmt.Errorf("fanout: ivf codec %q, want VP80", hdr.FourCC)
	}
	var frames [][]byte
	for {
		f, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("fanout: ivf frame %d: %w", len(frames), err)
		}
		frames = append(frames, f)
	}
	if len(frames) == 0 {
		return nil, errors.New("fanout: ivf has no frames")
	}
	return frames, nil
}

// stampRing remembers when each recently sent packet left the publisher,
// indexed by the publisher's sequence number and checked by payload hash.
type stampRing struct {
	seed maphash.Seed // shared by the publisher and viewers of one run
	e    [8192]struct {
		hash atomic.Uint64
		at   atomic.Int64
	}
}

func (r *stampRing) put(seq uint16, h uint64, at int64) {
	e := &r.e[seq%8192]
	e.hash.Store(0)
	e.at.Store(at)
	e.hash.Store(h)
}

// lookup finds the send time of a packet with hash h whose publisher
// sequence number is seq.
func (r *stampRing) lookup(seq uint16, h uint64) (int64, bool) {
	e := &r.e[seq%8192]
	if e.hash.Load() != h {
		return 0, false
	}
	at := e.at.Load()
	if e.hash.Load() != h {
		return 0, false
	}
	return at, true
}

// find scans for a hash (used once per viewer stream to learn the
// sequence-number offset the SFU applies).
func (r *stampRing) find(h uint64) (uint16, bool) {
	for i := range r.e {
		if r.e[i].hash.Load() == h {
			return uint16(i), true
		}
	}
	return 0, false
}

// publisher is the run's source: a WHIP session (startPublisher) or an
// RTMP connection (startRTMPPublisher). Its rings hold the send times of
// what it sent (video, audio), sent counts the RTP packets.
type publisher struct {
	sent      atomic.Int64
	rings     [2]*stampRing // video, audio
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	closeConn func() // ends the session or connection
	epoch     time.Time

	mu  sync.Mutex
	err error // why sending stopped early
}

func (p *publisher) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// failed is why the publisher stopped sending, nil while it sends.
func (p *publisher) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// kindsFor lists the media kinds a run carries: audio only (a light show)
// or video and audio.
func kindsFor(audioOnly bool) []webrtc.RTPCodecType {
	if audioOnly {
		return []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}
	}
	return []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}
}

func startPublisher(ctx context.Context, api apiT, hc *http.Client, base, token, stream string, frames frameSource, epoch time.Time, audioOnly bool) (*publisher, error) {
	p := &publisher{rings: [2]*stampRing{{seed: maphash.MakeSeed()}, {seed: maphash.MakeSeed()}}, epoch: epoch}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "bench")
	if err != nil {
		return nil, err
	}
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "bench")
	if err != nil {
		return nil, err
	}
	tracks := []webrtc.TrackLocal{video, audio}
	if audioOnly {
		tracks = tracks[1:]
	}
	sess, err := whip.Publish(ctx, base+"/whip/"+stream, whip.Options{API: api, HTTPClient: hc, Token: token}, tracks...)
	if err != nil {
		return nil, fmt.Errorf("fanout: publish: %w", err)
	}
	p.closeConn = func() { closeSession(sess) }
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sess.WaitConnected(cctx); err != nil {
		_ = sess.Close(context.Background())
		return nil, fmt.Errorf("fanout: publisher did not connect: %w", err)
	}
	ctx, p.cancel = context.WithCancel(ctx)
	if !audioOnly {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.sendVideo(ctx, video, frames) }()
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.sendAudio(ctx, audio) }()
	return p, nil
}

func (p *publisher) now() int64 { return int64(time.Since(p.epoch)) }

func (p *publisher) write(tr *webrtc.TrackLocalStaticRTP, ring *stampRing, pkt *rtp.Packet) {
	ring.put(pkt.SequenceNumber, maphash.Bytes(ring.seed, pkt.Payload), p.now())
	if err := tr.WriteRTP(pkt); err == nil {
		p.sent.Add(1)
	}
}

// sendVideo sends the frames at 30 fps.
func (p *publisher) sendVideo(ctx context.Context, tr *webrtc.TrackLocalStaticRTP, frames frameSource) {
	pz := rtp.NewPacketizer(1200, 96, 1, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	tk := time.NewTicker(time.Second / 30)
	defer tk.Stop()
	for i := 0; ; i++ {
		for _, pkt := range pz.Packetize(frames(i), 3000) {
			p.write(tr, p.rings[0], pkt)
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// sendAudio sends 20 ms Opus frames (opusFrame).
func (p *publisher) sendAudio(ctx context.Context, tr *webrtc.TrackLocalStaticRTP) {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	seq := uint16(time.Now().UnixNano())
	for i := uint32(0); ; i++ {
		payload := opusFrame(i)
		p.write(tr, p.rings[1], &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: i * 960}, Payload: payload})
		seq++
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// opusFrame is the i-th 20 ms Opus frame the publishers send: a silence
// TOC byte and padding, then the counter, so payloads (and hashes) differ.
func opusFrame(i uint32) []byte {
	return []byte{0xf8, 0xff, 0xfe, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

func (p *publisher) close() {
	if p.cancel == nil { // External: no publisher of ours
		return
	}
	p.cancel()
	p.closeConn()
	p.wg.Wait()
}

// closeSession DELETEs a session (bounded) and closes its PeerConnection.
func closeSession(s *whip.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Close(ctx)
}

// viewer is one WHEP session.
type viewer struct {
	sess      *whip.Session
	rings     [2]*stampRing
	epoch     time.Time
	audioOnly bool // first packet counts for any kind
	seiVideo  bool // video latency by frame-index SEI (the RTMP source)
	stalled   bool // over ICE-TCP through a stall proxy (Options.Stalled)
	postAt    int64
	firstAt   atomic.Int64
	measuring atomic.Bool
	wg        sync.WaitGroup

	mu      sync.Mutex
	streams [2]rxStream
}

// rxStream is what one viewer saw of one track.
type rxStream struct {
	started bool
	first   int64 // extended sequence number of the first packet
	ext     int64 // extended highest sequence number
	recv    int64
	synced  bool
	offset  uint16 // publisher seq - viewer seq
	lat     []float64
}

func startViewer(ctx context.Context, api apiT, hc *http.Client, base, token, stream string, epoch time.Time, rings [2]*stampRing, audioOnly, seiVideo bool) (*viewer, error) {
	v := &viewer{epoch: epoch, rings: rings, audioOnly: audioOnly, seiVideo: seiVideo}
	onTrack := func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		kind := 0
		if tr.Kind() == webrtc.RTPCodecTypeAudio {
			kind = 1
		}
		v.wg.Add(1)
		defer v.wg.Done()
		v.read(tr, kind)
	}
	v.postAt = int64(time.Since(epoch))
	sess, err := whip.Play(ctx, base+"/whep/"+stream, whip.Options{API: api, HTTPClient: hc, Token: token, Kinds: kindsFor(audioOnly), OnTrack: onTrack})
	if err != nil {
		return nil, err
	}
	v.sess = sess
	return v, nil
}

// read is the track's only reader: it parses headers in place.
func (v *viewer) read(tr *webrtc.TrackRemote, kind int) {
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := int64(time.Since(v.epoch))
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
		if (kind == 0 || v.audioOnly) && v.firstAt.Load() == 0 {
			v.firstAt.Store(now)
		}
		v.record(kind, h.SequenceNumber, buf[hl:end], now)
	}
}

func (v *viewer) record(kind int, seq uint16, payload []byte, now int64) {
	ring := v.rings[kind]
	measuring := v.measuring.Load()
	var hsh uint64
	if measuring && ring != nil {
		hsh = maphash.Bytes(ring.seed, payload)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := &v.streams[kind]
	if !s.started {
		s.started, s.ext, s.first = true, int64(seq), int64(seq)
	} else if d := int16(seq - uint16(s.ext)); d > 0 {
		s.ext += int64(d)
	}
	s.recv++
	if !measuring || ring == nil {
		return
	}
	if kind == 0 && v.seiVideo {
		// Only a frame's last packet, its index SEI, is matched: the
		// publisher stamped the frame's write under the index.
		if i, ok := seiIndex(payload); ok {
			if at, ok := ring.lookup(uint16(i), hsh); ok {
				s.lat = append(s.lat, float64(now-at)/1e6)
			}
		}
		return
	}
	if !s.synced {
		ps, ok := ring.find(hsh)
		if !ok {
			return
		}
		s.offset, s.synced = ps-seq, true
	}
	at, ok := ring.lookup(seq+s.offset, hsh)
	if !ok {
		// A layer or publisher change moves the offset: learn it again.
		s.synced = false
		return
	}
	s.lat = append(s.lat, float64(now-at)/1e6)
}

func (v *viewer) snapshot() snap {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out snap
	for k, s := range v.streams {
		if s.started {
			out.ext += s.ext - s.first + 1
			out.recv += s.recv
			out.kinds[k] = s.recv
		}
	}
	return out
}

// latencies are the viewer's latency samples of kind (0 video, 1 audio;
// -1 both).
func (v *viewer) latencies(kind int) []float64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []float64
	for k, s := range v.streams {
		if kind < 0 || k == kind {
			out = append(out, s.lat...)
		}
	}
	return out
}

// received tells whether the viewer got packets of kind in the window
// between snapshots a and b.
func (a snap) received(b snap, kind int) bool { return b.kinds[kind] > a.kinds[kind] }

func (v *viewer) close() {
	closeSession(v.sess)
	v.wg.Wait()
}
