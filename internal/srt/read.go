package srt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	gosrt "github.com/datarhei/gosrt"

	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
)

// read runs a reader: the stream's H.264 or H.265 and Opus, read through
// the stream's tap and muxed as MPEG-TS, until the reader leaves or the
// stream's publisher goes.
func (s *Server) read(req gosrt.ConnRequest, stream string, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	octx, ocancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	r, err := s.cfg.Tap.Open(octx, sfu.Streams, stream, tap.Options{Queue: s.cfg.ReaderQueue, Demand: true})
	ocancel()
	if err != nil {
		return refuse(gosrt.REJX_NOTFOUND, fmt.Errorf("stream %s is not live: %w", stream, err))
	}
	defer func() {
		s.drops.Add(r.Stats().Dropped)
		r.Close()
	}()
	conn, err := s.accept(req)
	if err != nil {
		return err
	}
	m, err := NewTSMuxer(r, conn)
	if err != nil {
		_ = conn.Close()
		s.rejected.Add(1)
		return fmt.Errorf("stream %s: %w to send over SRT", stream, err)
	}
	gone := make(chan struct{})
	go func() { // a reader sends nothing we need; this notices it leave
		defer close(gone)
		defer cancel()
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
	s.nread.Add(1)
	defer s.nread.Add(-1)
	log.Info("SRT reader attached", "tracks", m.Tracks())
	err = m.Run(ctx)
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("the stream's publisher left")
	case ctx.Err() != nil && s.ctx.Err() != nil:
		return errors.New("server closing")
	case ctx.Err() != nil:
		return errors.New("reader left")
	}
	return err
}
