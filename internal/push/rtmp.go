package push

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/bluenviron/gortmplib"

	"github.com/parley/parley/internal/rtmp"
)

// rtmpSession publishes to an RTMP or RTMPS server with gortmplib's
// client: H.264 and AAC as classic RTMP, H.265, AV1 and VP9 as enhanced
// RTMP (internal/rtmp's TapWriter).
type rtmpSession struct {
	c  *gortmplib.Client
	tw *rtmp.TapWriter
	*watcher
}

func dialRTMP(ctx context.Context, gone context.CancelFunc, p *pusher, u *url.URL, r Reader) (session, error) {
	tw, err := rtmp.NewTapWriter(r.Tracks(), true)
	if errors.Is(err, rtmp.ErrNoTrack) {
		return nil, cannotCarry{proto: "RTMP", tracks: r.Tracks()}
	}
	if err != nil {
		return nil, err
	}
	timeout := p.m.cfg.Timeout
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &net.Dialer{}
	c := &gortmplib.Client{
		URL:       rtmpTarget(u),
		Publish:   true,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.m.cfg.RootCAs}, // rtmps
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countConn{Conn: nc, p: p, timeout: timeout}, nil
		},
	}
	if err := c.Initialize(dctx); err != nil {
		return nil, fmt.Errorf("publishing: %w", err)
	}
	if err := tw.Start(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("sending the tracks: %w", err)
	}
	// The server's messages (acknowledgements, pings, errors) are read
	// and dropped: their end tells that the destination went.
	return &rtmpSession{c: c, tw: tw, watcher: watch(c.NetConn(), gone)}, nil
}

func (s *rtmpSession) run(ctx context.Context, r Reader) error {
	for {
		f, err := r.Read(ctx)
		if err != nil {
			return err
		}
		if err := s.tw.Write(f); err != nil {
			return fmt.Errorf("sending: %w", err)
		}
	}
}

func (s *rtmpSession) describe() string { return strings.Join(s.tw.Codecs(), ", ") }

func (s *rtmpSession) close() {
	s.c.Close()
	<-s.done
}
