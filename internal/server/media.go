package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/sfusignal"
	"github.com/parley/parley/internal/show"
	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/internal/tap"
	"github.com/parley/parley/internal/whip"
	"github.com/parley/parley/pkg/protocol"
)

// startMedia opens the SFU's ICE sockets and the WHIP/WHEP endpoints.
func (s *Server) startMedia() error {
	if s.cfg.MediaUDP == "off" {
		return nil
	}
	if err := s.startAccess(); err != nil {
		return err
	}
	publicIP := s.cfg.PublicIP
	if ip, ok := loopbackOnly(s.cfg.MediaUDP); ok && publicIP == "" {
		// Announce the loopback address (without it no candidate at all
		// would be offered), and say plainly who can reach it.
		s.log.Warn("media listens on loopback only and --public-ip is not set: only this machine can reach the SFU (group rooms, WHIP, WHEP); "+
			"listen on a reachable address (e.g. --media-udp :8443) and set --public-ip for other machines", "media_udp", s.cfg.MediaUDP)
		publicIP = ip
	}
	m, err := sfu.New(sfu.Config{UDP: s.cfg.MediaUDP, TCP: s.cfg.MediaTCP, PublicIP: publicIP, Logger: s.log, NoBatch: s.cfg.MediaNoBatch,
		MaxPublishBitrate: uint64(max(s.cfg.MaxPublishBitrate, 0)), OnRoomChange: s.roomChanged})
	if err != nil {
		s.stopAccess()
		return fmt.Errorf("media: %w", err)
	}
	limits := func(c whip.Config) whip.Config {
		c.Origins, c.ClientAddr = s.origins, s.clients.Request
		c.PendingPerIP, c.ICETimeout, c.ReattachGrace = s.cfg.PendingPerIP, s.cfg.ICETimeout.D(), s.cfg.ReattachGrace.D()
		return c
	}
	w, err := whip.New(limits(whip.Config{SFU: m, Verify: s.verifyStream, Authorize: s.authorizeHTTP, ICEServers: s.whipICEServers, Logger: s.log, Demand: s.demandStream, Redirect: s.whepOrigin,
		MaxViewers: s.cfg.MaxWebRTCViewersOf}))
	if err != nil {
		m.Close()
		s.stopAccess()
		return fmt.Errorf("whip: %w", err)
	}
	// The shows' audio lives in its own namespace behind its own endpoints,
	// so /whep/ cannot reach it and /whip/ cannot inject into it.
	sw, err := whip.New(limits(whip.Config{SFU: m, Namespace: sfu.Shows, Verify: s.verifyShowStream,
		ICEServers: s.whipICEServers, Logger: s.log, BasePath: showMediaPrefix}))
	if err != nil {
		w.Close()
		m.Close()
		s.stopAccess()
		return fmt.Errorf("show whip: %w", err)
	}
	s.sfu, s.whip, s.showWhip, s.bridge = m, w, sw, sfusignal.New(m, s.log)
	var tapCtx context.Context
	tapCtx, s.tapStop = context.WithCancel(context.Background())
	s.taps = tap.New(tapCtx, tap.Config{SFU: m, Demand: s.demandStream, Logger: s.log})
	s.startHLS()
	if err := s.startRTMP(); err != nil {
		s.stopMedia()
		return fmt.Errorf("rtmp: %w", err)
	}
	if err := s.startSRT(); err != nil {
		s.stopMedia()
		return fmt.Errorf("srt: %w", err)
	}
	if err := s.startCameras(); err != nil {
		s.stopMedia()
		return fmt.Errorf("cameras: %w", err)
	}
	if err := s.startRTSP(); err != nil {
		s.stopMedia()
		return fmt.Errorf("rtsp: %w", err)
	}
	if err := s.startRecording(); err != nil {
		s.stopMedia()
		return fmt.Errorf("recording: %w", err)
	}
	if err := s.startPushes(); err != nil {
		s.stopMedia()
		return fmt.Errorf("push: %w", err)
	}
	whipStat := func(f func(whip.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(w.Stats()) + f(sw.Stats())) }
	}
	s.metrics.GaugeFunc("parley_whip_pending_sessions", "WHIP/WHEP sessions whose ICE and DTLS have not connected yet.", whipStat(func(x whip.Stats) uint64 { return uint64(x.Pending) }))
	s.metrics.CounterFunc("parley_whip_pending_refused_total", "WHIP/WHEP POSTs refused because the client had --pending-per-ip sessions connecting.", whipStat(func(x whip.Stats) uint64 { return x.Refused }))
	s.metrics.CounterFunc("parley_whip_ice_timeouts_total", "WHIP/WHEP sessions dropped for not connecting within --ice-timeout.", whipStat(func(x whip.Stats) uint64 { return x.TimedOut }))
	s.metrics.CounterFunc("parley_whep_viewers_capped_total", "WHEP viewers refused with 503 because the stream had --max-webrtc-viewers (they can watch over HLS).", whipStat(func(x whip.Stats) uint64 { return x.Capped }))
	s.metrics.CounterFunc("parley_whip_publishers_lost_total", "WHIP publishers dropped because another publisher of the stream connected first.", whipStat(func(x whip.Stats) uint64 { return x.Lost }))
	stat := func(f func(sfu.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(m.Stats())) }
	}
	s.metrics.GaugeFunc("parley_sfu_participants", "SFU participants (WHIP, WHEP and SFU-room members).", stat(func(x sfu.Stats) uint64 { return uint64(x.Participants) }))
	s.metrics.GaugeFunc("parley_sfu_tracks", "Published tracks.", stat(func(x sfu.Stats) uint64 { return uint64(x.Tracks) }))
	s.metrics.GaugeFunc("parley_sfu_subscriptions", "Forwarded down-tracks.", stat(func(x sfu.Stats) uint64 { return uint64(x.DownTracks) }))
	s.metrics.CounterFunc("parley_sfu_packets_received_total", "RTP packets read from publishers.", stat(func(x sfu.Stats) uint64 { return x.Received }))
	s.metrics.CounterFunc("parley_sfu_packets_forwarded_total", "RTP packets written to subscribers.", stat(func(x sfu.Stats) uint64 { return x.Forwarded }))
	s.metrics.CounterFunc("parley_sfu_packets_dropped_total", "RTP packets that could not be written.", stat(func(x sfu.Stats) uint64 { return x.Dropped }))
	s.metrics.CounterFunc("parley_sfu_sink_drops_total", "RTP packets dropped because a subscriber fell behind (summed over subscriptions).", stat(func(x sfu.Stats) uint64 { return x.SinkDrops }))
	s.metrics.CounterFunc("parley_sfu_nack_answered_total", "Retransmissions served from the packet cache.", stat(func(x sfu.Stats) uint64 { return x.NACKAnswered }))
	s.metrics.CounterFunc("parley_sfu_plis_total", "Keyframe requests sent to publishers.", stat(func(x sfu.Stats) uint64 { return x.PLIs }))
	s.metrics.CounterFunc("parley_sfu_nack_rtx_total", "Retransmissions sent on subscribers' RTX streams (part of parley_sfu_nack_answered_total).", stat(func(x sfu.Stats) uint64 { return x.NACKOnRTX }))
	s.metrics.CounterFunc("parley_sfu_probe_packets_total", "Padding packets sent to probe subscribers' links (bandwidth estimate).", stat(func(x sfu.Stats) uint64 { return x.Probes }))
	s.metrics.CounterFunc("parley_sfu_padding_dropped_total", "Publishers' padding-only packets not forwarded, once per subscriber.", stat(func(x sfu.Stats) uint64 { return x.PaddingDropped }))
	return nil
}

// loopbackOnly reports whether a listen address is on loopback only, and
// the loopback IP it announces.
func loopbackOnly(addr string) (ip string, ok bool) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	if host == "localhost" {
		return "127.0.0.1", true
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.IsLoopback() {
		return "", false
	}
	return a.Unmap().String(), true
}

func (s *Server) stopMedia() {
	s.stopRecording()
	s.stopPushes()
	s.stopCameras()
	s.stopRTSP()
	s.stopRTMP()
	s.stopSRT()
	if s.whip != nil {
		s.whip.Close()
	}
	if s.showWhip != nil {
		s.showWhip.Close()
	}
	s.stopHLS()
	if s.taps != nil {
		s.tapStop()
		s.taps.Wait()
	}
	if s.sfu != nil {
		if err := s.sfu.Close(); err != nil {
			s.log.Warn("closing sfu", "err", err)
		}
	}
	s.stopAccess() // last: every session above has ended and queued its on_done
}

// serveWHIP hands /whip/ and /whep/ to the WHIP handler once media runs.
func (s *Server) serveWHIP(w http.ResponseWriter, r *http.Request) {
	if s.whip == nil {
		httperr.Write(w, http.StatusServiceUnavailable, "media-off", "this server runs without media (--media-udp off)")
		return
	}
	s.whip.ServeHTTP(w, r)
}

// showMediaPrefix is where the shows' WHIP/WHEP endpoints live:
// {prefix}/whip/show-{name} for the host, {prefix}/whep/show-{name} for
// screens.
const showMediaPrefix = "/api/show-media"

// serveShowWHIP hands the shows' media endpoints to their WHIP handler.
func (s *Server) serveShowWHIP(w http.ResponseWriter, r *http.Request) {
	if s.showWhip == nil {
		httperr.Write(w, http.StatusServiceUnavailable, "media-off", "this server runs without media (--media-udp off)")
		return
	}
	http.StripPrefix(showMediaPrefix, s.showWhip).ServeHTTP(w, r)
}

// verifyShowStream admits only show audio streams ("show-<name>") to the
// shows' endpoints, with the same token rules as any stream.
func (s *Server) verifyShowStream(r *http.Request, stream string, publish bool) error {
	if !strings.HasPrefix(stream, show.StreamName("")) {
		return fmt.Errorf("%w: %s is not a show's audio stream", httperr.ErrInsufficientScope, stream)
	}
	return s.verifyStream(r, stream, publish)
}

// verifyStream checks a WHIP/WHEP bearer token when auth is on.
func (s *Server) verifyStream(r *http.Request, stream string, publish bool) error {
	if s.auth == nil {
		return nil
	}
	c, err := s.requestClaims(r, false)
	if err != nil {
		return err
	}
	return streamGrant(c, stream, publish)
}

// streamGrant checks that claims grant publishing or playing stream.
func streamGrant(c auth.Claims, stream string, publish bool) error {
	switch {
	case !c.AllowsRoom(stream):
		return fmt.Errorf("%w: the token does not grant stream %s", httperr.ErrInsufficientScope, stream)
	case publish && !c.Grants.Publish:
		return fmt.Errorf("%w: the token does not grant publish", httperr.ErrInsufficientScope)
	case !publish && !c.Grants.Subscribe:
		return fmt.Errorf("%w: the token does not grant subscribe", httperr.ErrInsufficientScope)
	}
	return nil
}

// whipICEServers are announced in WHIP/WHEP Link headers.
func (s *Server) whipICEServers(r *http.Request) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, is := range s.requestICEServers(r, "whip-") {
		out = append(out, webrtc.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return out
}

// mediaRooms gives members of sfu-mode rooms their media session; the
// bridge exists once Start has opened the SFU.
type mediaRooms struct{ s *Server }

func (m mediaRooms) Join(room, member string, g auth.Grants, send func(protocol.Message)) (signal.MediaSession, error) {
	if m.s.bridge == nil {
		return nil, errors.New("media is not running")
	}
	return m.s.bridge.Join(room, member, g, send)
}
