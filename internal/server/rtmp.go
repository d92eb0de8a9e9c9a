package server

import (
	"net"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/rtmp"
	"github.com/parley/parley/internal/whip"
)

// startRTMP opens the RTMP ingest listener unless it is off; it needs the
// SFU and the WHIP handler (which holds the stream names).
func (s *Server) startRTMP() error {
	if s.cfg.RTMP == "" || s.cfg.RTMP == "off" {
		return nil
	}
	if s.sfu == nil {
		s.log.Warn("RTMP ingest is off because media is off (--media-udp off)", "rtmp", s.cfg.RTMP)
		return nil
	}
	srv, err := rtmp.Listen(rtmp.Config{
		Listen: s.cfg.RTMP, SFU: s.sfu, Verify: s.verifyPublishToken, ValidStream: whip.ValidStream,
		Claim: s.ingestClaimer(), Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.rtmp = srv
	s.log.Info("RTMP ingest listening", "addr", srv.Addr().String(), "publish", "rtmp://"+hostPortURL(srv.Addr().(*net.TCPAddr))+"/live/<stream>")
	stat := func(f func(rtmp.Stats) float64) func() float64 { return func() float64 { return f(srv.Stats()) } }
	s.metrics.GaugeFunc("parley_rtmp_connections", "RTMP connections open.", stat(func(x rtmp.Stats) float64 { return float64(x.Conns) }))
	s.metrics.GaugeFunc("parley_rtmp_publishers", "RTMP publishers live.", stat(func(x rtmp.Stats) float64 { return float64(x.Publishers) }))
	s.metrics.CounterFunc("parley_rtmp_connections_total", "RTMP connections accepted.", stat(func(x rtmp.Stats) float64 { return float64(x.Accepted) }))
	s.metrics.CounterFunc("parley_rtmp_connections_refused_total", "RTMP connections refused by the per-address limit.", stat(func(x rtmp.Stats) float64 { return float64(x.Refused) }))
	s.metrics.CounterFunc("parley_rtmp_publishes_refused_total", "RTMP publishes refused (token, stream name, busy stream, codecs).", stat(func(x rtmp.Stats) float64 { return float64(x.Rejected) }))
	s.metrics.GaugeFunc("parley_rtmp_audio_unavailable", "Live RTMP publishers whose AAC cannot be transcoded (ffmpeg not found).", stat(func(x rtmp.Stats) float64 { return float64(x.AudioUnavailable) }))
	return nil
}

// ingestClaimer takes stream names through WHIP's handler, so WHIP, RTMP
// and RTSP publishers share them.
func (s *Server) ingestClaimer() ingest.Claimer {
	w := s.whip
	return func(stream string, tracks int) (ingest.Claim, error) {
		c, err := w.ClaimStream(stream, tracks)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return c, nil
	}
}

func (s *Server) stopRTMP() {
	if s.rtmp != nil {
		if err := s.rtmp.Close(); err != nil {
			s.log.Warn("closing rtmp", "err", err)
		}
	}
}

// RTMPAddr is the RTMP listener's bound address, nil when it is off.
func (s *Server) RTMPAddr() net.Addr {
	if s.rtmp == nil {
		return nil
	}
	return s.rtmp.Addr()
}
