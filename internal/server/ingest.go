package server

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"

	"github.com/parley/parley/internal/signal"
)

// ingestListener is one stream listener in GET /api/ingest: its port and
// whether it takes publishers and serves readers.
type ingestListener struct {
	Port    int  `json:"port"`
	Publish bool `json:"publish"`
	Read    bool `json:"read"`
}

// ingestInfo is what GET /api/ingest answers: which ways in and out of a
// stream this server offers, for the broadcast page's URL list. A
// listener that is off (or media as a whole) is left out. Host is the
// name to put in rtmp://, rtsp:// and srt:// URLs (IPv6 in brackets): the
// first --public-host, else the host the page was loaded from.
type ingestInfo struct {
	Host  string          `json:"host"`
	Auth  bool            `json:"auth"`  // tokens are required
	Media bool            `json:"media"` // WHIP/WHEP (and /w/) work
	RTMP  *ingestListener `json:"rtmp,omitempty"`
	RTSP  *ingestListener `json:"rtsp,omitempty"`
	SRT   *ingestListener `json:"srt,omitempty"`

	// PreferH264 asks browser publishers to send H.264 first: LL-HLS,
	// RTMP readers and MP4 recordings carry H.264, not VP8.
	PreferH264 bool `json:"prefer_h264"`
}

func (s *Server) ingestInfo(w http.ResponseWriter, r *http.Request) {
	host := signal.HostOf(r)
	if len(s.cfg.PublicHost) > 0 {
		host = s.cfg.PublicHost[0]
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	if strings.Contains(host, ":") { // IPv6: bracketed, ready for a URL
		host = "[" + host + "]"
	}
	info := ingestInfo{Host: host, Auth: s.auth != nil, Media: s.sfu != nil, PreferH264: s.preferH264()}
	if s.sfu != nil {
		info.RTMP = boundListener(s.RTMPAddr())
		info.SRT = boundListener(s.SRTAddr())
		info.RTSP = boundListener(s.RTSPAddr())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(info)
}

// preferH264 reports whether a stream's readers other than WebRTC need
// H.264 from browser publishers: LL-HLS (on by default) and RTMP readers
// carry H.264, not VP8 (MP4 recording too).
func (s *Server) preferH264() bool {
	return s.sfu != nil && (s.hls != nil || boundListener(s.RTMPAddr()) != nil)
}

// boundListener is a running listener by its address; nil when off.
func boundListener(a net.Addr) *ingestListener {
	var port int
	switch a := a.(type) {
	case *net.TCPAddr:
		port = a.Port
	case *net.UDPAddr:
		port = a.Port
	default:
		return nil
	}
	return &ingestListener{Port: port, Publish: true, Read: true}
}
