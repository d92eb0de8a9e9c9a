package sfu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// ErrNoTCP is returned for an ICE-TCP probe when ICE-TCP is off.
var ErrNoTCP = errors.New("sfu: ICE-TCP is off")

// Probe answers a reachability check from a browser (the /check page): a
// data-channel-only offer, answered by a PeerConnection on the SFU's own
// media sockets restricted to one transport, so the browser's data channel
// opens only if that port (UDP, or ICE-TCP when tcp) is reachable from it.
// The connection carries no media and joins no room; it is closed when the
// browser closes it, when it fails, when the SFU closes, or after ttl.
func (s *SFU) Probe(offer string, tcp bool, ttl time.Duration) (answer string, err error) {
	if tcp && s.tcpMux == nil {
		return "", ErrNoTCP
	}
	se, err := s.settingEngine(s.lf, !tcp, tcp)
	if err != nil {
		return "", err
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", fmt.Errorf("sfu: probe: %w", err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, ttl)
	stop := context.AfterFunc(ctx, func() { _ = pc.Close() })
	end := func() { stop(); cancel(); _ = pc.Close() }
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed ||
			st == webrtc.PeerConnectionStateDisconnected {
			cancel()
		}
	})
	// The browser says "ok" once its channel is open; echoing it proves
	// the path works both ways.
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) { _ = dc.SendText(string(m.Data)) })
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		end()
		return "", fmt.Errorf("sfu: probe offer: %w", err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		end()
		return "", fmt.Errorf("sfu: probe answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		end()
		return "", fmt.Errorf("sfu: probe answer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		end()
		return "", fmt.Errorf("sfu: probe: %w", ctx.Err())
	}
	return pc.LocalDescription().SDP, nil
}
