package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/parley/parley/internal/access"
	"github.com/parley/parley/internal/ingest"
)

// authorize is the ingest.Authorizer every stream listener (RTMP, RTSP,
// SRT, WHIP, WHEP) checks its clients with, in one order: the token's
// grant for the stream when auth is on (publish, or subscribe to read),
// then the CIDR lists, then the on_publish/on_play hook (internal/access).
// The returned end fires on_done.
func (s *Server) authorize(ctx context.Context, r ingest.Request) (end func(), err error) {
	if s.auth != nil {
		hint := "(in the " + r.Proto + " URL)"
		switch r.Proto { // where each protocol takes the token
		case "whip", "whep":
			hint = "(Authorization: Bearer)"
		case "rtmp", "hls":
			hint = "(?token= in the URL)"
		case "srt":
			hint = "(:<token> after the stream in the streamid)"
		case "rtsp":
			hint = "(as the RTSP password)"
		}
		c, err := s.tokenClaims(r.Token, hint)
		if err != nil {
			return nil, err
		}
		if err := streamGrant(c, r.Stream, r.Action == ingest.Publish); err != nil {
			return nil, err
		}
	}
	end = func() {}
	if s.access != nil {
		if end, err = s.access.Check(ctx, r); err != nil {
			return nil, err
		}
	}
	return s.countSession(r, end), nil
}

// authorizeHTTP is WHIP's and WHEP's way into authorize: the bearer
// token, and the client address as the trusted proxies tell it.
func (s *Server) authorizeHTTP(r *http.Request, stream string, publish bool, id string) (end func(), err error) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	req := ingest.Request{Action: ingest.Read, Proto: "whep", Stream: stream, Token: tok, Remote: s.clients.Request(r).Unmap(), ID: id}
	if publish {
		req.Action, req.Proto = ingest.Publish, "whip"
	}
	return s.authorize(r.Context(), req)
}

// startAccess builds the CIDR lists and hooks from the config; it runs
// before any stream listener starts.
func (s *Server) startAccess() error {
	var l access.Lists
	var err error
	parse := func(dst *access.List, items []string) {
		if err == nil {
			*dst, err = access.ParseList(items)
		}
	}
	parse(&l.PublishAllow, s.cfg.PublishAllow)
	parse(&l.ReadAllow, s.cfg.ReadAllow)
	if len(s.cfg.StreamAccess) > 0 {
		l.Streams = map[string]access.StreamLists{}
	}
	for name, sa := range s.cfg.StreamAccess {
		var sl access.StreamLists
		parse(&sl.PublishAllow, sa.PublishAllow)
		parse(&sl.PublishDeny, sa.PublishDeny)
		parse(&sl.ReadAllow, sa.ReadAllow)
		parse(&sl.ReadDeny, sa.ReadDeny)
		l.Streams[name] = sl
	}
	if err != nil {
		return fmt.Errorf("access lists: %w", err) // config validated them
	}
	h := s.cfg.Hooks
	c, err := access.New(access.Config{Lists: l, OnPublish: h.OnPublish, OnPlay: h.OnPlay, OnDone: h.OnDone,
		HookTimeout: h.Timeout.D(), Logger: s.log})
	if err != nil {
		return err
	}
	s.access = c
	stat := func(f func(access.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(c.Stats())) }
	}
	s.metrics.CounterFunc("parley_access_address_denied_total", "Publishes and plays refused by --publish-allow, --read-allow or stream_access.", stat(func(x access.Stats) uint64 { return x.AddressDenied }))
	s.metrics.CounterFunc("parley_access_hook_refused_total", "Publishes and plays refused by the on_publish/on_play hook (non-2xx, error or timeout).", stat(func(x access.Stats) uint64 { return x.HookRefused }))
	s.metrics.CounterFunc("parley_access_done_sent_total", "on_done hook calls answered 2xx.", stat(func(x access.Stats) uint64 { return x.DoneSent }))
	s.metrics.CounterFunc("parley_access_done_failed_total", "on_done hook calls that failed or answered non-2xx.", stat(func(x access.Stats) uint64 { return x.DoneFailed }))
	s.metrics.CounterFunc("parley_access_done_dropped_total", "on_done events dropped because the queue was full.", stat(func(x access.Stats) uint64 { return x.DoneDropped }))
	if h.OnPublish != "" || h.OnPlay != "" || h.OnDone != "" {
		s.log.Info("stream hooks on", "on_publish", h.OnPublish != "", "on_play", h.OnPlay != "", "on_done", h.OnDone != "", "timeout", h.Timeout.D())
	}
	return nil
}

// stopAccess sends the last on_done events (sessions ended before it).
func (s *Server) stopAccess() {
	if s.access != nil {
		s.access.Close()
	}
}

// streamListener reports whether a stream listener (--rtmp, --rtsp, --srt
// at addr) starts: not when it is off, nor when media is off (it needs
// the SFU and the WHIP handler, which holds the stream names).
func (s *Server) streamListener(name, addr string) bool {
	if addr == "" || addr == "off" {
		return false
	}
	if s.sfu == nil {
		s.log.Warn(name+" is off because media is off (--media-udp off)", name, addr)
		return false
	}
	return true
}

// claimStream is the ingest.Claimer of every stream listener: the names
// are WHIP's, so one stream has one publisher over any protocol.
func (s *Server) claimStream(stream string, tracks int) (ingest.Claim, error) {
	c, err := s.whip.ClaimStream(stream, tracks)
	if err != nil {
		return nil, err
	}
	return c, nil
}
