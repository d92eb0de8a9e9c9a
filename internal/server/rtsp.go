package server

import (
	"net"

	"github.com/parley/parley/internal/rtsp"
	"github.com/parley/parley/internal/whip"
)

// startRTSP opens the RTSP listener unless it is off; it needs the SFU
// and the WHIP handler (which holds the stream names).
func (s *Server) startRTSP() error {
	if !s.streamListener("rtsp", s.cfg.RTSP) {
		return nil
	}
	srv, err := rtsp.Listen(rtsp.Config{
		Listen: s.cfg.RTSP, UDP: s.cfg.RTSPUDP, SFU: s.sfu, Authorize: s.authorize, ValidStream: whip.ValidStream,
		Claim: s.claimStream, ConnsPerIP: s.cfg.StreamConnsPerIP, Registry: s.sources, Demand: s.demandStream, Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.rtsp = srv
	url := "rtsp://" + hostPortURL(srv.Addr().(*net.TCPAddr)) + "/<stream>"
	udp := "off"
	if a := srv.UDPAddr(); a != nil {
		udp = a.String()
	}
	s.log.Info("RTSP listening", "addr", srv.Addr().String(), "udp", udp, "publish_and_read", url)
	stat := func(f func(rtsp.Stats) float64) func() float64 { return func() float64 { return f(srv.Stats()) } }
	s.metrics.GaugeFunc("parley_rtsp_connections", "RTSP connections open.", stat(func(x rtsp.Stats) float64 { return float64(x.Conns) }))
	s.metrics.GaugeFunc("parley_rtsp_publishers", "RTSP publishers live.", stat(func(x rtsp.Stats) float64 { return float64(x.Publishers) }))
	s.metrics.GaugeFunc("parley_rtsp_readers", "RTSP readers playing.", stat(func(x rtsp.Stats) float64 { return float64(x.Readers) }))
	s.metrics.CounterFunc("parley_rtsp_connections_total", "RTSP connections accepted.", stat(func(x rtsp.Stats) float64 { return float64(x.Accepted) }))
	s.metrics.CounterFunc("parley_rtsp_connections_refused_total", "RTSP connections refused by the per-address limit.", stat(func(x rtsp.Stats) float64 { return float64(x.Refused) }))
	s.metrics.CounterFunc("parley_rtsp_requests_refused_total", "RTSP publishes and reads refused (token, stream name, busy or absent stream, codecs, session limit).", stat(func(x rtsp.Stats) float64 { return float64(x.Rejected) }))
	return nil
}

func (s *Server) stopRTSP() {
	if s.rtsp != nil {
		if err := s.rtsp.Close(); err != nil {
			s.log.Warn("closing rtsp", "err", err)
		}
	}
}

// RTSPAddr is the RTSP listener's bound address, nil when it is off.
func (s *Server) RTSPAddr() net.Addr {
	if s.rtsp == nil {
		return nil
	}
	return s.rtsp.Addr()
}
