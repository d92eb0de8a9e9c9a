package server

import (
	"net"

	"github.com/parley/parley/internal/rtmp"
	"github.com/parley/parley/internal/whip"
)

// startRTMP opens the RTMP ingest listener unless it is off; it needs the
// SFU and the WHIP handler (which holds the stream names).
func (s *Server) startRTMP() error {
	if !s.streamListener("rtmp", s.cfg.RTMP) {
		return nil
	}
	srv, err := rtmp.Listen(rtmp.Config{
		Listen: s.cfg.RTMP, SFU: s.sfu, Authorize: s.authorize, ValidStream: whip.ValidStream,
		Claim: s.claimStream, ConnsPerIP: s.cfg.StreamConnsPerIP, MaxConns: s.cfg.StreamMaxConns, Registry: s.sources,
		Tap: s.taps, Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.rtmp = srv
	s.log.Info("RTMP listening", "addr", srv.Addr().String(), "url", "rtmp://"+hostPortURL(srv.Addr().(*net.TCPAddr))+"/live/<stream>")
	stat := func(f func(rtmp.Stats) float64) func() float64 { return func() float64 { return f(srv.Stats()) } }
	s.metrics.GaugeFunc("parley_rtmp_connections", "RTMP connections open.", stat(func(x rtmp.Stats) float64 { return float64(x.Conns) }))
	s.metrics.GaugeFunc("parley_rtmp_publishers", "RTMP publishers live.", stat(func(x rtmp.Stats) float64 { return float64(x.Publishers) }))
	s.metrics.GaugeFunc("parley_rtmp_readers", "RTMP players reading a stream.", stat(func(x rtmp.Stats) float64 { return float64(x.Readers) }))
	s.metrics.CounterFunc("parley_rtmp_connections_total", "RTMP connections accepted.", stat(func(x rtmp.Stats) float64 { return float64(x.Accepted) }))
	s.metrics.CounterFunc("parley_rtmp_connections_refused_total", "RTMP connections refused by the per-address limit.", stat(func(x rtmp.Stats) float64 { return float64(x.Refused) }))
	s.metrics.CounterFunc("parley_rtmp_publishes_refused_total", "RTMP publishes refused (token, address lists, hook, stream name, busy stream, codecs).", stat(func(x rtmp.Stats) float64 { return float64(x.Rejected) }))
	s.metrics.GaugeFunc("parley_rtmp_audio_unavailable", "Live RTMP publishers whose AAC cannot be transcoded (ffmpeg not found).", stat(func(x rtmp.Stats) float64 { return float64(x.AudioUnavailable) }))
	return nil
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
