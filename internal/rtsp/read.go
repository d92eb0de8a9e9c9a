package rtsp

import (
	"context"
	"strings"
	"sync"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/sfu"
)

// reader is one player's view of a stream: a gortsplib stream described
// from the SFU tracks, fed by subscriptions to them once it plays.
type reader struct {
	s      *Server
	stream string
	token  string
	room   *sfu.Room
	rs     *gortsplib.ServerStream
	tracks []readTrack
	end    func() // the Authorizer's, until a session takes it

	mu      sync.Mutex
	subs    []*sfu.Subscription
	startOn *gortsplib.ServerSession // PLAY accepted, subscriptions to start
	done    chan struct{}            // closed by close
	once    sync.Once
}

type readTrack struct {
	id   string // TrackInfo.ID
	m    *description.Media
	pt   uint8
	kind string
}

// describeTrack is the RTSP format a track of this codec is read as.
func describeTrack(mime string) (format.Format, bool) {
	switch strings.ToLower(mime) {
	case strings.ToLower(webrtc.MimeTypeH264):
		return &format.H264{PayloadTyp: ingest.PTH264, PacketizationMode: 1}, true
	case strings.ToLower(webrtc.MimeTypeOpus):
		return &format.Opus{PayloadTyp: ingest.PTOpus, ChannelCount: 2}, true
	case strings.ToLower(webrtc.MimeTypePCMU):
		return &format.G711{PayloadTyp: ingest.PTPCMU, MULaw: true, SampleRate: 8000, ChannelCount: 1}, true
	case strings.ToLower(webrtc.MimeTypePCMA):
		return &format.G711{PayloadTyp: ingest.PTPCMA, SampleRate: 8000, ChannelCount: 1}, true
	case strings.ToLower(webrtc.MimeTypeVP8):
		return &format.VP8{PayloadTyp: ptVP8}, true
	case strings.ToLower(webrtc.MimeTypeVP9):
		return &format.VP9{PayloadTyp: ptVP9}, true
	case strings.ToLower(webrtc.MimeTypeAV1):
		return &format.AV1{PayloadTyp: ptAV1}, true
	case strings.ToLower(webrtc.MimeTypeH265):
		return &format.H265{PayloadTyp: ingest.PTH265}, true // parameter sets travel in-band, before each IRAP
	}
	return nil, false
}

// newReader describes the live stream's tracks (the first video and the
// first audio of a codec RTSP carries; H.264 with the SPS and PPS of its
// latest keyframe when it comes within paramsWait); ok is false when
// nothing is live, here or on demand (Config.Demand).
func (s *Server) newReader(stream, token string, end func()) (*reader, bool) {
	room, ok := s.cfg.SFU.LookupRoom(sfu.Streams, stream)
	if (!ok || len(room.Tracks()) == 0) && s.cfg.Demand != nil {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReadTimeout)
		if s.cfg.Demand(ctx, stream) {
			room, ok = s.cfg.SFU.LookupRoom(sfu.Streams, stream)
		}
		cancel()
	}
	if !ok {
		return nil, false
	}
	rd := &reader{s: s, stream: stream, token: token, room: room, end: end, done: make(chan struct{})}
	desc := &description.Session{Title: stream}
	have := map[string]bool{}
	for _, ti := range room.Tracks() {
		f, ok := describeTrack(ti.Codec)
		if !ok || have[ti.Kind] || ti.Muted {
			continue
		}
		have[ti.Kind] = true
		if h, ok := f.(*format.H264); ok {
			h.SPS, h.PPS = s.h264Params(room, ti.ID)
		}
		typ := description.MediaTypeVideo
		if ti.Kind == "audio" {
			typ = description.MediaTypeAudio
		}
		m := &description.Media{Type: typ, Formats: []format.Format{f}}
		desc.Medias = append(desc.Medias, m)
		rd.tracks = append(rd.tracks, readTrack{id: ti.ID, m: m, pt: f.PayloadType(), kind: ti.Kind})
	}
	if len(rd.tracks) == 0 {
		return nil, false
	}
	rd.rs = &gortsplib.ServerStream{Server: s.srv, Desc: desc}
	if err := rd.rs.Initialize(); err != nil {
		s.log.Warn("describing a stream", "stream", stream, "err", err)
		return nil, false
	}
	return rd, true
}

// play subscribes to the tracks; the session closes when they end (the
// publisher left: players reconnect to the next one).
func (rd *reader) play(ss *gortsplib.ServerSession) error {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.subs != nil {
		return nil // PLAY after PAUSE
	}
	for _, t := range rd.tracks {
		sub, err := rd.room.Subscribe(t.id, sink{rs: rd.rs, m: t.m}, sfu.SinkOptions{SSRC: 1, PayloadType: t.pt})
		if err != nil {
			for _, x := range rd.subs {
				x.Close()
			}
			rd.subs = nil
			return err
		}
		rd.subs = append(rd.subs, sub)
	}
	for _, sub := range rd.subs {
		rd.s.wg.Add(1)
		go func() {
			defer rd.s.wg.Done()
			select {
			case <-sub.Done():
				ss.Close()
			case <-rd.done:
			}
		}()
	}
	return nil
}

func (rd *reader) playing() bool {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.subs != nil
}

// close ends the subscriptions and the stream, and the authorization the
// reader still holds.
func (rd *reader) close() {
	rd.once.Do(func() {
		close(rd.done)
		rd.mu.Lock()
		subs := rd.subs
		rd.mu.Unlock()
		for _, sub := range subs {
			sub.Close()
		}
		rd.rs.Close()
		if rd.end != nil {
			rd.end()
		}
	})
}

// sink writes one subscription's packets to the reader's stream, which
// gives them its SSRC and queues them for the session.
type sink struct {
	rs *gortsplib.ServerStream
	m  *description.Media
}

func (k sink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: h.Marker, PayloadType: h.PayloadType,
		SequenceNumber: h.SequenceNumber, Timestamp: h.Timestamp}, Payload: payload}
	if err := k.rs.WritePacketRTP(k.m, pkt); err != nil {
		return 0, err
	}
	return len(payload), nil
}

// OnDescribe answers with the live stream's tracks, 404 when it is not
// live.
func (s *Server) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	stream, end, r := s.access(ctx.Conn, ctx.Request, ctx.Path, ctx.Query, ingest.Read)
	if r != nil {
		res, err := s.reject("read", ctx.Conn, ctx.Path, r)
		return res, nil, err
	}
	token, _, _ := credentials(ctx.Request.Header["Authorization"], ctx.Query)
	rd, ok := s.newReader(stream, token, end)
	if !ok {
		end()
		res, err := s.reject("read", ctx.Conn, ctx.Path, refuse(base.StatusNotFound, "stream "+stream+" is not live"))
		return res, nil, err
	}
	s.mu.Lock()
	old := s.pending[ctx.Conn]
	s.pending[ctx.Conn] = rd
	s.mu.Unlock()
	if old != nil {
		old.close()
	}
	return &base.Response{StatusCode: base.StatusOK}, rd.rs, nil
}

// OnSetup admits a publisher's medias, and a reader's: the stream its
// connection described (with that authorization), or a new one.
func (s *Server) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	s.mu.Lock()
	se := s.sessions[ctx.Session]
	s.mu.Unlock()
	if se != nil && se.rd != nil { // the next media of the session
		if strings.TrimPrefix(ctx.Path, "/") != se.stream {
			return &base.Response{StatusCode: base.StatusBadRequest}, nil, nil
		}
		return &base.Response{StatusCode: base.StatusOK}, se.rd.rs, nil
	}
	if s.sessionCount() >= s.cfg.MaxSessions {
		res, err := s.reject("read", ctx.Conn, ctx.Path, refuse(base.StatusServiceUnavailable, "too many sessions"))
		return res, nil, err
	}
	token, _, _ := credentials(ctx.Request.Header["Authorization"], ctx.Query)
	s.mu.Lock()
	rd := s.pending[ctx.Conn]
	if rd != nil && "/"+rd.stream == ctx.Path && rd.token == token {
		delete(s.pending, ctx.Conn)
	} else {
		rd = nil
	}
	s.mu.Unlock()
	if rd == nil {
		stream, end, r := s.access(ctx.Conn, ctx.Request, ctx.Path, ctx.Query, ingest.Read)
		if r != nil {
			res, err := s.reject("read", ctx.Conn, ctx.Path, r)
			return res, nil, err
		}
		var ok bool
		if rd, ok = s.newReader(stream, token, end); !ok {
			end()
			res, err := s.reject("read", ctx.Conn, ctx.Path, refuse(base.StatusNotFound, "stream "+stream+" is not live"))
			return res, nil, err
		}
	}
	end := rd.end
	rd.end = nil // the session ends it
	s.mu.Lock()
	s.sessions[ctx.Session] = &session{stream: rd.stream, conn: ctx.Conn, end: end, rd: rd}
	s.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, rd.rs, nil
}

// OnPlay checks that the tracks are still there; the subscriptions start
// in OnResponse, once the library counts the session as a reader (what a
// subscription writes first, the keyframe with its parameters, would be
// lost before).
func (s *Server) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	s.mu.Lock()
	se := s.sessions[ctx.Session]
	s.mu.Unlock()
	if se == nil || se.rd == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, nil
	}
	if !se.rd.playing() {
		live := map[string]bool{}
		for _, ti := range se.rd.room.Tracks() {
			live[ti.ID] = true
		}
		for _, t := range se.rd.tracks {
			if !live[t.id] {
				res, err := s.reject("read", ctx.Conn, ctx.Path, refuse(base.StatusNotFound, "stream "+se.stream+" ended"))
				return res, err
			}
		}
		se.rd.mu.Lock()
		se.rd.startOn = ctx.Session
		se.rd.mu.Unlock()
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnResponse starts a reader's subscriptions after its PLAY succeeded.
func (s *Server) OnResponse(conn *gortsplib.ServerConn, res *base.Response) {
	ss := conn.Session()
	if ss == nil {
		return
	}
	s.mu.Lock()
	se := s.sessions[ss]
	s.mu.Unlock()
	if se == nil || se.rd == nil {
		return
	}
	se.rd.mu.Lock()
	start := se.rd.startOn
	se.rd.startOn = nil
	se.rd.mu.Unlock()
	if start == nil || res.StatusCode != base.StatusOK {
		return
	}
	if err := se.rd.play(ss); err != nil {
		s.log.Info("RTSP reader: the stream ended", "stream", se.stream, "err", err)
		ss.Close()
		return
	}
	s.nread.Add(1)
	s.log.Info("RTSP reader playing", "stream", se.stream, "remote", conn.NetConn().RemoteAddr(),
		"transport", ss.Transport().Protocol.String())
}
