package rtmp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/transcode"
)

// Reading (play): rtmp://host/live/<stream> plays any live stream,
// whatever publishes it (WHIP, a browser, RTMP, RTSP, SRT). H.264 goes out
// as it came; Opus becomes AAC through one transcoder per stream shared
// by all its RTMP readers (aacTap); G.711 passes. Other video codecs (VP8,
// VP9, AV1) cannot travel in classic RTMP: such a stream is read without
// video. A reader's queue is bounded: when it is full, video waits for
// the next keyframe and audio frames are dropped; both are counted. The
// session ends when the stream's publisher goes.

// readQueue bounds the frames waiting for one reader's connection.
const readQueue = 256

type media struct {
	video bool
	au    [][]byte // video access unit
	frame []byte   // audio frame
	pts   time.Duration
}

// reader is one RTMP play session's state shared by its sinks.
type reader struct {
	out     chan media
	ended   chan struct{} // a track ended: the publisher is gone
	endOnce sync.Once
	start   time.Time // when the first keyframe arrived: pts 0

	mu         sync.Mutex
	sps, pps   []byte
	keyframe   chan struct{} // closed at the first keyframe with SPS and PPS
	kfOnce     sync.Once
	dropped    uint64
	waitingKey bool
}

func (r *reader) end() { r.endOnce.Do(func() { close(r.ended) }) }

// send queues m without blocking; false when the queue is full.
func (r *reader) send(m media) bool {
	select {
	case r.out <- m:
		return true
	default:
		r.mu.Lock()
		r.dropped++
		r.mu.Unlock()
		return false
	}
}

// clock maps one track's RTP timestamps to presentation times: the
// track's first frame is placed at its arrival since the reader started,
// the rest follow its timestamps.
type clock struct {
	rate    int64
	started bool
	first   uint32
	offset  time.Duration
}

func (c *clock) pts(ts uint32, since time.Time) time.Duration {
	if !c.started {
		c.started, c.first, c.offset = true, ts, max(time.Since(since), 0)
	}
	return c.offset + time.Duration(int64(int32(ts-c.first))*int64(time.Second)/c.rate)
}

// videoSink depacketizes H.264 into access units.
type videoSink struct {
	r   *reader
	dec rtph264.Decoder
	clk clock
}

func (v *videoSink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	// The decoder keeps NAL units of an unfinished access unit: they must
	// outlive this call.
	pkt := rtp.Packet{Header: *h, Payload: bytes.Clone(payload)}
	au, err := v.dec.Decode(&pkt)
	if err != nil {
		return len(payload), nil // more packets needed, or a loss the next keyframe repairs
	}
	r := v.r
	idr := h264.IsRandomAccess(au)
	if idr {
		var sps, pps []byte
		for _, n := range au {
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				sps = n
			case h264.NALUTypePPS:
				pps = n
			}
		}
		r.mu.Lock()
		if sps != nil && pps != nil {
			r.sps, r.pps = sps, pps
		}
		ready := r.sps != nil && r.pps != nil
		r.mu.Unlock()
		if ready {
			r.kfOnce.Do(func() {
				r.start = time.Now()
				close(r.keyframe)
			})
		}
	}
	select {
	case <-r.keyframe:
	default:
		return len(payload), nil // nothing before the first keyframe
	}
	r.mu.Lock()
	skip := r.waitingKey && !idr
	if idr {
		r.waitingKey = false
	}
	r.mu.Unlock()
	if skip {
		return len(payload), nil
	}
	if !r.send(media{video: true, au: au, pts: v.clk.pts(h.Timestamp, r.start)}) {
		r.mu.Lock()
		r.waitingKey = true
		r.mu.Unlock()
	}
	return len(payload), nil
}

// audioSink passes G.711 frames, or, for AAC, is fed by an aacTap.
type audioSink struct {
	r   *reader
	clk clock
}

func (a *audioSink) frame(b []byte, ts uint32) {
	select {
	case <-a.r.keyframe:
	default:
		return // audio starts with the picture
	}
	a.r.send(media{frame: bytes.Clone(b), pts: a.clk.pts(ts, a.r.start)})
}

func (a *audioSink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	a.frame(payload, h.Timestamp)
	return len(payload), nil
}

// aacTap is one stream's Opus to AAC transcoder, shared by its RTMP readers.
type aacTap struct {
	s      *Server
	key    string // stream and track
	tr     *transcode.OpusToAAC
	sub    *sfu.Subscription
	refs   int // guarded by Server.mu
	mu     sync.Mutex
	sinks  map[*audioSink]struct{}
	closed bool
}

// WriteRTP feeds the transcoder (the subscription's goroutine).
func (t *aacTap) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	t.tr.Write(payload, h.Timestamp)
	return len(payload), nil
}

func (t *aacTap) onFrame(au []byte, ts uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for a := range t.sinks {
		a.frame(au, ts)
	}
}

// tap joins an audio sink to the stream's transcoder, starting it for the
// first reader; the returned func leaves (and stops it with the last).
func (s *Server) tap(room *sfu.Room, stream, trackID string, a *audioSink, log *slog.Logger) (leave func(), err error) {
	key := stream + "\x00" + trackID
	s.mu.Lock()
	t := s.taps[key]
	if t == nil {
		t = &aacTap{s: s, key: key, sinks: map[*audioSink]struct{}{}}
		t.tr, err = transcode.StartOpusToAAC(s.ctx, transcode.OpusConfig{Channels: 2, FFmpeg: s.cfg.FFmpeg,
			Logger: log, OnFrame: t.onFrame})
		if err == nil {
			t.sub, err = room.Subscribe(trackID, t, sfu.SinkOptions{SSRC: 1})
			if err != nil {
				t.tr.Close()
			}
		}
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("audio: %w", err)
		}
		s.taps[key] = t
		if st := t.tr.Status(); st.Err != "" {
			log.Error("RTMP readers of this stream get no sound", "err", st.Err)
		}
	}
	t.refs++
	s.mu.Unlock()
	t.mu.Lock()
	t.sinks[a] = struct{}{}
	t.mu.Unlock()
	go func() { // the reader ends with the track
		select {
		case <-t.sub.Done():
			a.r.end()
		case <-a.r.ended:
		}
	}()
	return func() {
		t.mu.Lock()
		delete(t.sinks, a)
		t.mu.Unlock()
		s.mu.Lock()
		t.refs--
		last := t.refs == 0
		if last {
			delete(s.taps, key)
		}
		s.mu.Unlock()
		if last {
			t.sub.Close()
			t.tr.Close()
		}
	}, nil
}

// play serves one reader until the stream ends, the client goes or the
// server closes.
func (s *Server) play(c net.Conn, sc *gortmplib.ServerConn) error {
	stream, token, err := parsePath(sc.URL, s.cfg.ValidStream)
	if err != nil {
		s.rejected.Add(1)
		_ = refuse(sc, "NetStream.Play.StreamNotFound", err.Error())
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	log := s.log.With("stream", stream, "remote", c.RemoteAddr(), "action", "read")
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	end, err := s.cfg.Authorize.Authorize(ctx, ingest.Request{Action: ingest.Read, Proto: "rtmp", Stream: stream,
		Token: token, Remote: remoteAddr(c), ID: newSessionID()})
	if err != nil {
		s.rejected.Add(1)
		_ = refuse(sc, "NetStream.Play.Failed", err.Error())
		log.Info("read refused", "err", err)
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	defer end()
	room, ok := s.cfg.SFU.LookupRoom(sfu.Streams, stream)
	var video, audio *sfu.TrackInfo
	if ok {
		for _, ti := range room.Tracks() {
			switch {
			case video == nil && strings.EqualFold(ti.Codec, "video/H264"):
				video = &ti
			case audio == nil && ti.Kind == "audio" && audioCodec(ti.Codec) != nil:
				audio = &ti
			}
		}
	}
	if video == nil && audio == nil {
		s.rejected.Add(1)
		why := "stream " + stream + " is not live"
		if ok && len(room.Tracks()) > 0 {
			why = "stream " + stream + " has no track RTMP can carry (H.264 video, Opus or G.711 audio)"
		}
		_ = refuse(sc, "NetStream.Play.StreamNotFound", why)
		return fmt.Errorf("%w: %s", errRejected, why)
	}
	r := &reader{out: make(chan media, readQueue), ended: make(chan struct{}), keyframe: make(chan struct{})}
	defer r.end() // ends the goroutines watching the tracks
	if video == nil {
		r.start = time.Now()
		close(r.keyframe)
	}
	var subs []*sfu.Subscription
	defer func() {
		for _, sub := range subs {
			sub.Close()
		}
	}()
	watch := func(sub *sfu.Subscription) {
		subs = append(subs, sub)
		go func() {
			select {
			case <-sub.Done():
				r.end()
			case <-r.ended:
			}
		}()
	}
	var tracks []*gortmplib.Track
	var vt, at *gortmplib.Track
	if video != nil {
		vs := &videoSink{r: r, dec: rtph264.Decoder{PacketizationMode: 1}, clk: clock{rate: 90000}}
		if err := vs.dec.Init(); err != nil {
			return fmt.Errorf("H.264 decoder: %w", err)
		}
		sub, err := room.Subscribe(video.ID, vs, sfu.SinkOptions{SSRC: 1})
		if err != nil {
			return fmt.Errorf("subscribing to the video: %w", err)
		}
		watch(sub)
	}
	if audio != nil {
		as := &audioSink{r: r}
		at = &gortmplib.Track{Codec: audioCodec(audio.Codec)}
		if _, isAAC := at.Codec.(*codecs.MPEG4Audio); isAAC {
			as.clk.rate = 48000
			leave, err := s.tap(room, stream, audio.ID, as, log)
			if err != nil {
				return err
			}
			defer leave()
		} else {
			as.clk.rate = 8000
			sub, err := room.Subscribe(audio.ID, as, sfu.SinkOptions{SSRC: 2})
			if err != nil {
				return fmt.Errorf("subscribing to the audio: %w", err)
			}
			watch(sub)
		}
	}
	// The client only acknowledges from now on: reading (and discarding)
	// tells when it goes.
	_ = c.SetReadDeadline(time.Time{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				cancel()
				return
			}
		}
	}()
	defer func() {
		_ = c.SetReadDeadline(time.Now()) // unblocks the read
		<-readerDone
	}()
	// The first keyframe gives the SPS and PPS the stream header needs.
	wait := time.NewTimer(s.cfg.HandshakeTimeout)
	defer wait.Stop()
	select {
	case <-r.keyframe:
	case <-r.ended:
		return errors.New("the stream ended")
	case <-ctx.Done():
		return ctx.Err()
	case <-wait.C:
		_ = refuse(sc, "NetStream.Play.Failed", "no keyframe from the publisher")
		return errors.New("no keyframe within the handshake timeout")
	}
	if video != nil {
		r.mu.Lock()
		vt = &gortmplib.Track{Codec: &codecs.H264{SPS: r.sps, PPS: r.pps}}
		r.mu.Unlock()
		tracks = append(tracks, vt)
	}
	if at != nil {
		tracks = append(tracks, at)
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.cfg.ReadTimeout))
	w := &gortmplib.Writer{Conn: sc, Tracks: tracks}
	if err := w.Initialize(); err != nil {
		return fmt.Errorf("starting the play: %w", err)
	}
	s.nread.Add(1)
	defer s.nread.Add(-1)
	log.Info("RTMP reader playing", "video", video != nil, "audio", at != nil)
	defer func() {
		r.mu.Lock()
		if r.dropped > 0 {
			log.Info("RTMP reader dropped frames (too slow)", "frames", r.dropped)
		}
		r.mu.Unlock()
	}()
	for {
		select {
		case m := <-r.out:
			_ = c.SetWriteDeadline(time.Now().Add(s.cfg.ReadTimeout))
			var err error
			switch {
			case m.video:
				err = w.WriteH264(vt, m.pts, m.pts, m.au)
			default:
				err = writeAudio(w, at, m)
			}
			if err != nil {
				return fmt.Errorf("reader: %w", err)
			}
		case <-r.ended:
			return errors.New("the stream's publisher went")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func writeAudio(w *gortmplib.Writer, t *gortmplib.Track, m media) error {
	switch t.Codec.(type) {
	case *codecs.MPEG4Audio:
		return w.WriteMPEG4Audio(t, m.pts, m.frame)
	default:
		return w.WriteG711(t, m.pts, m.frame)
	}
}

// audioCodec is the RTMP codec a WebRTC audio track is read as: AAC for
// Opus (transcoded), G.711 as it is; nil for others.
func audioCodec(mime string) codecs.Codec {
	switch strings.ToLower(mime) {
	case "audio/opus":
		return &codecs.MPEG4Audio{Config: &mpeg4audio.AudioSpecificConfig{
			Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 2}}
	case "audio/pcmu":
		return &codecs.G711{MULaw: true, ChannelCount: 1}
	case "audio/pcma":
		return &codecs.G711{MULaw: false, ChannelCount: 1}
	}
	return nil
}
