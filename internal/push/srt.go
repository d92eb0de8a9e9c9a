package push

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	gosrt "github.com/datarhei/gosrt"

	"github.com/parley/parley/internal/srt"
)

// srtSession sends MPEG-TS to an SRT listener (caller mode) with
// internal/srt's TSMuxer: H.264 or H.265 video, AAC or Opus audio.
type srtSession struct {
	conn   gosrt.Conn
	mux    *srt.TSMuxer
	codecs []string
	*watcher
}

func dialSRT(ctx context.Context, gone context.CancelFunc, p *pusher, u *url.URL, r Reader) (session, error) {
	names := srt.TSCodecs(r.Tracks())
	if len(names) == 0 {
		return nil, cannotCarry{proto: "SRT (MPEG-TS)", tracks: r.Tracks()}
	}
	timeout := p.m.cfg.Timeout
	cfg := srt.GoSRTConfig()
	cfg.ConnectionTimeout = timeout
	addr, err := cfg.UnmarshalURL(u.String()) // streamid, passphrase, latency… from the query
	if err != nil {
		return nil, fmt.Errorf("srt options: %w", err)
	}
	type result struct {
		c   gosrt.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() { // gosrt's Dial takes no context; it ends within cfg.ConnectionTimeout
		c, err := gosrt.Dial("srt", addr, cfg)
		ch <- result{c, err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		if res = <-ch; res.c != nil {
			res.c.Close()
		}
		return nil, ctx.Err()
	}
	if res.err != nil {
		return nil, fmt.Errorf("connecting: %w", res.err)
	}
	conn := res.c
	mux, err := srt.NewTSMuxer(r, &countConn{Conn: conn, p: p, timeout: timeout})
	if err != nil {
		conn.Close()
		return nil, err
	}
	// A listener sends nothing we need; reading notices it leave.
	return &srtSession{conn: conn, mux: mux, codecs: names, watcher: watch(conn, gone)}, nil
}

func (s *srtSession) run(ctx context.Context, _ Reader) error { return s.mux.Run(ctx) }

func (s *srtSession) describe() string { return strings.Join(s.codecs, ", ") }

func (s *srtSession) close() {
	s.conn.Close()
	<-s.done
}
