package sfu

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Header extension URIs the SFU negotiates.
const (
	audioLevelURI  = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
	absSendTimeURI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
)

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBGoogREMB},
	{Type: webrtc.TypeRTCPFBTransportCC},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	{Type: webrtc.TypeRTCPFBNACK},
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
}

// codecTable lists the codecs Parley offers and accepts, in preference order.
func codecTable() []webrtc.RTPCodecParameters {
	video := func(pt webrtc.PayloadType, mime, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFeedback},
			PayloadType:        pt,
		}
	}
	rtx := func(pt, apt webrtc.PayloadType) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", apt)},
			PayloadType:        pt,
		}
	}
	const h264 = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id="
	return []webrtc.RTPCodecParameters{
		// RED first: a browser publisher sends what the answer lists first
		// (red.go); every browser that offers it offers Opus too.
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeRED, ClockRate: 48000, Channels: 2, SDPFmtpLine: "111/111"}, PayloadType: redPT},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1;usedtx=1",
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},

		video(96, webrtc.MimeTypeVP8, ""), rtx(97, 96),
		video(98, webrtc.MimeTypeVP9, "profile-id=0"), rtx(99, 98),
		video(102, webrtc.MimeTypeH264, h264+"42001f"), rtx(103, 102),
		video(125, webrtc.MimeTypeH264, h264+"42e01f"), rtx(107, 125),
		video(127, webrtc.MimeTypeH264, h264+"4d001f"), rtx(121, 127),
		video(112, webrtc.MimeTypeH264, h264+"64001f"), rtx(113, 112),
		video(45, webrtc.MimeTypeAV1, ""), rtx(46, 45),
		// Last, so no publisher is steered to it: H.265 reaches only the
		// viewers that offer it (RTMP, RTSP, SRT and camera sources).
		video(116, webrtc.MimeTypeH265, ""), rtx(117, 116),
	}
}

func registerCodecs(me *webrtc.MediaEngine) error {
	for _, c := range codecTable() {
		if err := me.RegisterCodec(c, codecKindOfMime(c.MimeType)); err != nil {
			return fmt.Errorf("register %s/%d: %w", c.MimeType, c.PayloadType, err)
		}
	}
	// Audio level, abs-send-time and transport-cc go both ways: read on
	// what publishers send, written anew by the down-tracks with the
	// subscriber's IDs (downTrack.setExtensions). RID and repaired RID are
	// only read (simulcast publishers).
	recv := []webrtc.RTPTransceiverDirection{webrtc.RTPTransceiverDirectionRecvonly}
	exts := []struct {
		uri   string
		kinds []webrtc.RTPCodecType
		dirs  []webrtc.RTPTransceiverDirection // nil: any
	}{
		{audioLevelURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}, nil},
		{sdp.SDESMidURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}, nil},
		{sdp.SDESRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}, recv},
		{sdp.SDESRepairRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}, recv},
		{absSendTimeURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}, nil},
		{sdp.TransportCCURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}, nil},
	}
	for _, e := range exts {
		for _, k := range e.kinds {
			if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, k, e.dirs...); err != nil {
				return fmt.Errorf("register extension %s: %w", e.uri, err)
			}
		}
	}
	return nil
}

// registerInterceptors installs what the SFU wants from pion's interceptors:
// RTCP sender/receiver reports, and TWCC feedback for published streams.
// There is deliberately no NACK responder: subscribers' NACKs are answered
// from the SFU's own packet cache, so packets are not buffered twice; and
// no NACK generator: the layers' readers ask publishers for what they miss
// (nackgen.go), seeing the packets resent on RTX, which pion's generator
// does not.
func registerInterceptors(_ *webrtc.MediaEngine, ir *interceptor.Registry, receiveOnly bool) error {
	send, err := report.NewSenderInterceptor()
	if err != nil {
		return fmt.Errorf("sender reports: %w", err)
	}
	ir.Add(send)
	if receiveOnly {
		return nil
	}
	recv, err := report.NewReceiverInterceptor()
	if err != nil {
		return fmt.Errorf("receiver reports: %w", err)
	}
	ir.Add(recv)
	tw, err := twcc.NewSenderInterceptor()
	if err != nil {
		return fmt.Errorf("twcc: %w", err)
	}
	ir.Add(tw)
	return nil
}

// SupportedCodecs lists the MIME types the SFU accepts, for error messages.
func SupportedCodecs() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range codecTable() {
		if c.MimeType == webrtc.MimeTypeRTX || isRED(c.MimeType) || seen[c.MimeType] {
			continue
		}
		seen[c.MimeType] = true
		out = append(out, c.MimeType)
	}
	return out
}

// pionLoggerFactory sends pion's logs to slog; pion's chatty levels
// (trace, debug, info) go to Debug.
type pionLoggerFactory struct{ log *slog.Logger }

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) emit(level slog.Level, msg string) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, msg)
	}
}

func (l pionLogger) Trace(msg string)                  {}
func (l pionLogger) Tracef(format string, args ...any) {}
func (l pionLogger) Debug(msg string)                  { l.emit(slog.LevelDebug-4, msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.emitf(slog.LevelDebug-4, format, args...) }
func (l pionLogger) Info(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.emitf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.emitf(slog.LevelDebug, format, args...) }
func (l pionLogger) Error(msg string)                  { l.emit(slog.LevelWarn, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.emitf(slog.LevelWarn, format, args...) }

func (l pionLogger) emitf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}
