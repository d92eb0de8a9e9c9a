package client

import (
	"fmt"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/pkg/protocol"
)

// Configuration turns the iceServers of a joined message into a pion
// configuration. relayOnly forces all media through TURN.
func Configuration(servers []protocol.ICEServer, relayOnly bool) webrtc.Configuration {
	cfg := webrtc.Configuration{}
	for _, s := range servers {
		ice := webrtc.ICEServer{URLs: s.URLs, Username: s.Username}
		if s.Credential != "" {
			ice.Credential = s.Credential
			ice.CredentialType = webrtc.ICECredentialTypePassword
		}
		cfg.ICEServers = append(cfg.ICEServers, ice)
	}
	if relayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	return cfg
}

// NewPeerConnection builds a PeerConnection from the joined message's ICE
// servers. api may be nil for pion's defaults; programs talking to a server
// on the same machine want an API whose SettingEngine includes loopback
// candidates (see LoopbackAPI).
func NewPeerConnection(api *webrtc.API, servers []protocol.ICEServer, relayOnly bool) (*webrtc.PeerConnection, error) {
	if api == nil {
		api = webrtc.NewAPI()
	}
	pc, err := api.NewPeerConnection(Configuration(servers, relayOnly))
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	return pc, nil
}

// LoopbackAPI is a pion API with default codecs and interceptors whose
// ICE also gathers loopback candidates, for peers on one machine.
func LoopbackAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("register codecs: %w", err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	ir, err := defaultInterceptors(m)
	if err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir)), nil
}

func defaultInterceptors(m *webrtc.MediaEngine) (*interceptor.Registry, error) {
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, fmt.Errorf("register interceptors: %w", err)
	}
	return ir, nil
}
