package rtmp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/bluenviron/gortmplib"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
)

// Reading (play): rtmp://host/live/<stream> plays any live stream,
// whatever publishes it (WHIP, a browser, RTMP, RTSP, SRT), through the
// stream's tap (internal/tap): H.264 goes out as it came; Opus becomes AAC
// through the one transcoder per stream the tap shares with every reader
// that wants AAC (RTMP players, restreaming); G.711 passes. Other video
// codecs (VP8, VP9, AV1) cannot travel in classic RTMP: such a stream is
// read without video. A reader's queue is bounded: when it is full, it
// skips to the next keyframe (counted). The session ends when the
// stream's publisher goes.

// readQueue bounds the frames waiting for one reader's connection.
const readQueue = 256

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
	// The first keyframe gives the SPS and PPS the stream header needs.
	octx, ocancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	r, err := s.cfg.Tap.Open(octx, sfu.Streams, stream, tap.Options{AAC: true, Queue: readQueue, Demand: true})
	ocancel()
	if err != nil {
		s.rejected.Add(1)
		why := "stream " + stream + " is not live"
		if !errors.Is(err, tap.ErrNotLive) {
			why = "no keyframe from the publisher"
		}
		_ = refuse(sc, "NetStream.Play.StreamNotFound", why)
		return fmt.Errorf("%w: %s: %w", errRejected, why, err)
	}
	defer r.Close()
	tw, err := NewTapWriter(r.Tracks(), false)
	if err != nil {
		s.rejected.Add(1)
		why := "stream " + stream + " has no track RTMP can carry (H.264 video, Opus or G.711 audio)"
		_ = refuse(sc, "NetStream.Play.StreamNotFound", why)
		return fmt.Errorf("%w: %s", errRejected, why)
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
	_ = c.SetWriteDeadline(time.Now().Add(s.cfg.ReadTimeout))
	if err := tw.Start(sc); err != nil {
		return fmt.Errorf("starting the play: %w", err)
	}
	s.nread.Add(1)
	defer s.nread.Add(-1)
	log.Info("RTMP reader playing", "tracks", tw.Codecs())
	defer func() {
		if d := r.Stats().Dropped; d > 0 {
			log.Info("RTMP reader dropped frames (too slow)", "frames", d)
		}
	}()
	for {
		f, err := r.Read(ctx)
		if errors.Is(err, io.EOF) {
			return errors.New("the stream's publisher went")
		}
		if err != nil {
			return err
		}
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.ReadTimeout))
		if err := tw.Write(f); err != nil {
			return fmt.Errorf("reader: %w", err)
		}
	}
}
