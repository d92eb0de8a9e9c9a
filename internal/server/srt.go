package server

import (
	"net"

	"github.com/parley/parley/internal/srt"
	"github.com/parley/parley/internal/whip"
)

// startSRT opens the SRT listener unless it is off; it needs the SFU and
// the WHIP handler (which holds the stream names).
func (s *Server) startSRT() error {
	if !s.streamListener("srt", s.cfg.SRT) {
		return nil
	}
	srv, err := srt.Listen(srt.Config{
		Listen: s.cfg.SRT, SFU: s.sfu, Authorize: s.authorize, ValidStream: whip.ValidStream,
		Claim: s.claimStream, ConnsPerIP: s.cfg.StreamConnsPerIP, Registry: s.sources, Tap: s.taps, Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.srt = srv
	ua := srv.Addr().(*net.UDPAddr)
	url := "srt://" + hostPortURL(&net.TCPAddr{IP: ua.IP, Port: ua.Port})
	s.log.Info("SRT listening", "addr", srv.Addr().String(), "publish", url+"?streamid=publish:<stream>", "read", url+"?streamid=read:<stream>")
	stat := func(f func(srt.Stats) float64) func() float64 { return func() float64 { return f(srv.Stats()) } }
	s.metrics.GaugeFunc("parley_srt_sessions", "SRT sessions open (callers being decided or served).", stat(func(x srt.Stats) float64 { return float64(x.Sessions) }))
	s.metrics.GaugeFunc("parley_srt_publishers", "SRT publishers live.", stat(func(x srt.Stats) float64 { return float64(x.Publishers) }))
	s.metrics.GaugeFunc("parley_srt_readers", "SRT readers attached.", stat(func(x srt.Stats) float64 { return float64(x.Readers) }))
	s.metrics.CounterFunc("parley_srt_sessions_total", "SRT sessions accepted.", stat(func(x srt.Stats) float64 { return float64(x.Accepted) }))
	s.metrics.CounterFunc("parley_srt_connections_refused_total", "SRT callers refused by the per-address limit.", stat(func(x srt.Stats) float64 { return float64(x.Refused) }))
	s.metrics.CounterFunc("parley_srt_sessions_refused_total", "SRT sessions refused (streamid, access, busy or not live stream, codecs).", stat(func(x srt.Stats) float64 { return float64(x.Rejected) }))
	s.metrics.CounterFunc("parley_srt_reader_drops_total", "Access units dropped because an SRT reader fell behind.", stat(func(x srt.Stats) float64 { return float64(x.ReaderDrops) }))
	s.metrics.CounterFunc("parley_srt_decode_errors_total", "MPEG-TS errors skipped in SRT publishers' streams.", stat(func(x srt.Stats) float64 { return float64(x.DecodeErrors) }))
	return nil
}

func (s *Server) stopSRT() {
	if s.srt != nil {
		if err := s.srt.Close(); err != nil {
			s.log.Warn("closing srt", "err", err)
		}
	}
}

// SRTAddr is the SRT listener's bound UDP address, nil when it is off.
func (s *Server) SRTAddr() net.Addr {
	if s.srt == nil {
		return nil
	}
	return s.srt.Addr()
}
