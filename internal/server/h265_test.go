package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/pkg/whip"
)

// TestH265ToWHEP: H.265 and Opus published over enhanced RTMP; a WHEP
// viewer that offers H.265 gets the picture; one that does not is told
// why (406, the codec named), as a viewer lacking any stream codec is.
func TestH265ToWHEP(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	aus, vps, sps, pps := rtmptest.X265Frames(t, 50)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, _ := url.Parse("rtmp://" + srv.RTMPAddr().String() + "/live/hevc")
	cl := &gortmplib.Client{URL: u, Publish: true}
	if err := cl.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	video := &gortmplib.Track{Codec: &codecs.H265{VPS: vps, SPS: sps, PPS: pps}}
	audio := &gortmplib.Track{Codec: &codecs.Opus{IDHeader: &opus.IDHeader{Version: 1, ChannelCount: 2, InputSampleRate: 48000}}}
	w := &gortmplib.Writer{Conn: cl, Tracks: []*gortmplib.Track{video, audio}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	published := make(chan struct{})
	go func() { // 25 fps of H.265, 20 ms Opus frames (silence), until stop
		defer close(published)
		tick := time.NewTicker(20 * time.Millisecond) // the media's pace
		defer tick.Stop()
		for i := 0; pctx.Err() == nil; i++ {
			pts := time.Duration(i) * 20 * time.Millisecond
			if i%2 == 0 && w.WriteH265(video, pts, pts, aus[i/2%len(aus)]) != nil {
				return
			}
			if w.WriteOpus(audio, pts, []byte{0xfc, 0xff, 0xfe}) != nil {
				return
			}
			select {
			case <-pctx.Done():
			case <-tick.C:
			}
		}
	}()
	defer func() { stop(); <-published }()
	waitTracks(ctx, t, srv, "hevc", 2)

	// A viewer that offers H.265.
	hevc := make(chan struct{}, 64)
	api := apiWith(t, true)
	if _, err := whip.Play(ctx, srv.URL()+"/whep/hevc", whip.Options{API: api, OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			if tr.Codec().MimeType == webrtc.MimeTypeH265 {
				select {
				case hevc <- struct{}{}:
				default:
				}
			}
		}
	}}); err != nil {
		t.Fatalf("WHEP with H.265: %v", err)
	}
	waitN(ctx, t, hevc, 20, "H.265 to a viewer that offers it")

	// A viewer without H.265 is told why, as for any codec it lacks.
	api = apiWith(t, false)
	_, err := whip.Play(ctx, srv.URL()+"/whep/hevc", whip.Options{API: api})
	var he *whip.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusNotAcceptable || he.Code != "unsupported_codec" || !strings.Contains(he.Message, "H265") {
		t.Fatalf("WHEP without H.265: %v, want 406 unsupported_codec naming H265", err)
	}
}

// apiWith is a loopback pion API with VP8, H.264 and Opus, and H.265 when
// hevc.
func apiWith(t *testing.T, hevc bool) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	codecs := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
	}
	if hevc {
		codecs = append(codecs, webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000}, PayloadType: 116})
	}
	for _, c := range codecs {
		kind := webrtc.RTPCodecTypeVideo
		if c.MimeType == webrtc.MimeTypeOpus {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}
