package srt

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	gosrt "github.com/datarhei/gosrt"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/parley/parley/internal/sfu"
)

// tsPacketsPerSRT is how many 188-byte MPEG-TS packets go in one SRT
// payload (1316 bytes, what SRT players expect).
const tsPacketsPerSRT = 7

// unit is one access unit (video) or Opus packet (audio) on its way to a
// reader's muxer, with its PTS in 90 kHz ticks.
type unit struct {
	video bool
	pts   int64
	data  [][]byte
}

// readQueue hands units from the subscriptions' goroutines to the muxer;
// it never blocks them: when full it drops, and after dropping video it
// drops video up to the next keyframe.
type readQueue struct {
	ch      chan unit
	s       *Server
	mu      sync.Mutex
	waitKey bool
}

func (q *readQueue) push(u unit) {
	if u.video {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.waitKey && !h264.IsRandomAccess(u.data) {
			q.s.drops.Add(1)
			return
		}
		q.waitKey = false
	}
	select {
	case q.ch <- u:
	default:
		q.s.drops.Add(1)
		if u.video {
			q.waitKey = true
		}
	}
}

// clock turns one track's RTP timestamps into PTS on the session's
// clock: the first packet is placed at its arrival time, later ones by
// their RTP distance from it (tracks are lined up by arrival, since
// their RTP clocks have independent origins).
type clock struct {
	start time.Time // the session's start
	rate  int64
	first bool
	base  int64 // 90 kHz PTS of the first packet
	ts0   uint32
	ext   int64 // unwrapped RTP ticks since ts0
	last  uint32
}

func (c *clock) pts(ts uint32) int64 {
	if !c.first {
		c.first, c.ts0, c.last = true, ts, ts
		c.base = int64(time.Since(c.start) * 90000 / time.Second)
		return c.base
	}
	c.ext += int64(int32(ts - c.last))
	c.last = ts
	return c.base + c.ext*90000/c.rate
}

// videoSink depacketizes H.264 into access units. It starts on an IDR
// with its SPS and PPS known, and puts them before every IDR lacking
// them, so a player can start on any keyframe (the subscription may
// begin inside a keyframe, past its parameter sets).
type videoSink struct {
	dec      rtph264.Decoder
	clk      clock
	q        *readQueue
	sps, pps []byte
	started  bool
}

func (v *videoSink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	// The decoder may keep the payload across packets of an access unit.
	pkt := rtp.Packet{Header: *h, Payload: append([]byte(nil), payload...)}
	au, err := v.dec.Decode(&pkt)
	if err != nil {
		return len(payload), nil // more packets needed, or a broken one skipped
	}
	if au = v.params(au); au != nil {
		v.q.push(unit{video: true, pts: v.clk.pts(h.Timestamp), data: au})
	}
	return len(payload), nil
}

// params keeps the latest SPS and PPS and completes IDRs with them; it
// returns nil for what comes before the first decodable IDR.
func (v *videoSink) params(au [][]byte) [][]byte {
	idr, has := false, false
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			v.sps, has = n, true
		case h264.NALUTypePPS:
			v.pps, has = n, true
		case h264.NALUTypeIDR:
			idr = true
		}
	}
	if v.sps == nil || v.pps == nil || (!v.started && !idr) {
		return nil
	}
	v.started = true
	if idr && !has {
		au = append([][]byte{v.sps, v.pps}, au...)
	}
	return au
}

// audioSink passes Opus packets on.
type audioSink struct {
	clk clock
	q   *readQueue
}

func (a *audioSink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if len(payload) > 0 {
		a.q.push(unit{pts: a.clk.pts(h.Timestamp), data: [][]byte{append([]byte(nil), payload...)}})
	}
	return len(payload), nil
}

// readTracks picks the stream's tracks a reader can take: the first
// H.264 and the first Opus.
func readTracks(ts []sfu.TrackInfo) (video, audio *sfu.TrackInfo) {
	for i := range ts {
		switch {
		case video == nil && strings.EqualFold(ts[i].Codec, webrtc.MimeTypeH264):
			video = &ts[i]
		case audio == nil && strings.EqualFold(ts[i].Codec, webrtc.MimeTypeOpus):
			audio = &ts[i]
		}
	}
	return video, audio
}

// read runs a reader: the stream's H.264 and Opus, muxed as MPEG-TS,
// until the reader leaves or the stream's tracks end.
func (s *Server) read(req gosrt.ConnRequest, stream string, log *slog.Logger) error {
	room, ok := s.cfg.SFU.LookupRoom(sfu.Streams, stream)
	if !ok || len(room.Tracks()) == 0 {
		return refuse(gosrt.REJX_NOTFOUND, fmt.Errorf("stream %s is not live", stream))
	}
	vi, ai := readTracks(room.Tracks())
	if vi == nil && ai == nil {
		return refuse(gosrt.REJX_NOTSUP_MEDIA, fmt.Errorf("stream %s has no H.264 or Opus track to send over SRT", stream))
	}
	conn, err := s.accept(req)
	if err != nil {
		return err
	}
	gone := make(chan struct{})
	go func() { // a reader sends nothing we need; this notices it leave
		defer close(gone)
		buf := make([]byte, 1500)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	defer func() {
		_ = conn.Close() // ends the goroutine above
		<-gone
	}()

	q := &readQueue{ch: make(chan unit, s.cfg.ReaderQueue), s: s, waitKey: true}
	start := time.Now()
	var tracks []*mpegts.Track
	var vt, at *mpegts.Track
	var subs []*sfu.Subscription
	defer func() {
		for _, sub := range subs {
			sub.Close()
		}
	}()
	if vi != nil {
		vt = &mpegts.Track{Codec: &mpegts.CodecH264{}}
		vs := &videoSink{dec: rtph264.Decoder{PacketizationMode: 1}, clk: clock{start: start, rate: 90000}, q: q}
		if err := vs.dec.Init(); err != nil {
			return err
		}
		sub, err := room.Subscribe(vi.ID, vs, sfu.SinkOptions{SSRC: 1})
		if err != nil {
			return fmt.Errorf("subscribing to video: %w", err)
		}
		subs, tracks = append(subs, sub), append(tracks, vt)
	}
	if ai != nil {
		at = &mpegts.Track{Codec: &mpegts.CodecOpus{ChannelCount: 2}}
		sub, err := room.Subscribe(ai.ID, &audioSink{clk: clock{start: start, rate: 48000}, q: q}, sfu.SinkOptions{SSRC: 2})
		if err != nil {
			return fmt.Errorf("subscribing to audio: %w", err)
		}
		subs, tracks = append(subs, sub), append(tracks, at)
	}
	bw := bufio.NewWriterSize(conn, tsPacketsPerSRT*188)
	w := &mpegts.Writer{W: bw, Tracks: tracks}
	if err := w.Initialize(); err != nil {
		return fmt.Errorf("MPEG-TS writer: %w", err)
	}
	s.nread.Add(1)
	defer s.nread.Add(-1)
	log.Info("SRT reader attached", "video", vi != nil, "audio", ai != nil)
	done := make([]<-chan struct{}, len(subs))
	for i, sub := range subs {
		done[i] = sub.Done()
	}
	for {
		select {
		case u := <-q.ch:
			var err error
			if u.video {
				err = w.WriteH264(vt, u.pts, u.pts, u.data)
			} else {
				err = w.WriteOpus(at, u.pts, u.data)
			}
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				return fmt.Errorf("reader: %w", err)
			}
		case <-done[0]:
			done = done[1:]
			if len(done) == 0 {
				return errors.New("the stream's publisher left")
			}
		case <-second(done):
			done = done[:1]
		case <-gone:
			return errors.New("reader left")
		case <-s.ctx.Done():
			return errors.New("server closing")
		}
	}
}

// second is the second channel of done, nil (never ready) without one.
func second(done []<-chan struct{}) <-chan struct{} {
	if len(done) < 2 {
		return nil
	}
	return done[1]
}
