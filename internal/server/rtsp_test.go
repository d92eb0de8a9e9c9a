package server_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// pushRTSP starts ffmpeg pushing the studio (H.264 and AAC) over RTSP.
func pushRTSP(ctx context.Context, t *testing.T, url, transport string) *proc {
	t.Helper()
	return run(t, rtmptest.StudioRTSP(ctx, url, transport))
}

// probeRTSP reads url with ffprobe over transport and checks its codecs.
func probeRTSP(ctx context.Context, t *testing.T, url, transport string, want ...string) {
	t.Helper()
	got, err := rtmptest.Probe(ctx, url, "-rtsp_transport", transport)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Sort(want); !slices.Equal(got, want) {
		t.Fatalf("ffprobe over %s: %v, want %v", transport, got, want)
	}
}

// TestRTSPToWHEP: ffmpeg pushes H.264 and AAC over RTSP (UDP, then TCP);
// a WHEP viewer gets H.264 and Opus; a second RTSP publisher and a WHIP
// publisher of the live stream are refused; ffmpeg killed and started
// again, the same viewer session gets both again.
func TestRTSPToWHEP(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			url := fmt.Sprintf("rtsp://%s/s", srv.RTSPAddr())
			ff := pushRTSP(ctx, t, url, transport)
			if n := waitRoom(ctx, t, srv, "s").WaitTracks(ctx, 2); n != 2 {
				t.Fatalf("%d tracks live, want 2", n)
			}
			viewer, video, audio := watch(ctx, t, srv.URL()+"/whep/s")
			waitN(ctx, t, video, 50, "H.264")
			waitN(ctx, t, audio, 25, "Opus")
			pushRTSP(ctx, t, url, transport).refused(ctx, t, "second RTSP publisher")
			api, _ := client.LoopbackAPI()
			pub, err := whip.Publish(ctx, srv.URL()+"/whip/s", whip.Options{API: api}, vp8(t))
			if got := status(t, pub, err); got != 409 {
				t.Fatalf("WHIP publish of a stream live over RTSP: %d, want 409", got)
			}

			// The camera drops and comes back: the same viewer session
			// continues on the new publisher's tracks.
			ff.kill()
			drain(video)
			drain(audio)
			pushRTSP(ctx, t, url, transport)
			waitN(ctx, t, video, 100, "H.264 after the restart")
			waitN(ctx, t, audio, 50, "Opus after the restart")
			if st := viewer.PeerConnection().ConnectionState(); st != webrtc.PeerConnectionStateConnected {
				t.Fatalf("viewer state %s", st)
			}
		})
	}
}

// TestRTSPRead: ffprobe reads over RTSP, UDP and TCP, a stream published
// over RTMP (H.264, Opus) and one published over WHIP by pion (VP8, Opus);
// a stream that is not live is 404 (ffprobe fails); an RTMP publisher of
// a stream live over RTSP is refused.
func TestRTSPRead(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	studio(ctx, t, fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr()))
	waitRoom(ctx, t, srv, "s").WaitTracks(ctx, 2)
	for _, tr := range []string{"udp", "tcp"} {
		probeRTSP(ctx, t, fmt.Sprintf("rtsp://%s/s", srv.RTSPAddr()), tr, "h264", "opus")
	}

	api, _ := client.LoopbackAPI()
	video := vp8(t)
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := whip.Publish(ctx, srv.URL()+"/whip/w", whip.Options{API: api}, video, audio)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(context.Background())
	stop := make(chan struct{})
	done := make(chan struct{})
	defer func() { close(stop); <-done }()
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0xf8, 0xff, 0xfe}})
			_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 1800}, Payload: vp8Keyframe})
		}
	}()
	waitRoom(ctx, t, srv, "w").WaitTracks(ctx, 2)
	for _, tr := range []string{"udp", "tcp"} {
		probeRTSP(ctx, t, fmt.Sprintf("rtsp://%s/w", srv.RTSPAddr()), tr, "vp8", "opus")
	}
	if _, err := rtmptest.Probe(ctx, fmt.Sprintf("rtsp://%s/nothing", srv.RTSPAddr())); err == nil {
		t.Fatal("ffprobe read a stream that is not live")
	}

	url := fmt.Sprintf("rtsp://%s/r", srv.RTSPAddr())
	pushRTSP(ctx, t, url, "tcp")
	waitRoom(ctx, t, srv, "r").WaitTracks(ctx, 2)
	studio(ctx, t, fmt.Sprintf("rtmp://%s/live/r", srv.RTMPAddr())).refused(ctx, t, "RTMP publisher of a stream live over RTSP")
}

// TestRTSPAuth: with auth on, the token is the password of the URL's
// credentials: none, a garbage one, one for another stream or without the
// grant are refused, for publishing and for reading; the right ones work.
func TestRTSPAuth(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret; c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// ffmpeg cuts URL credentials to 127 bytes: it takes the token as
	// ?token= (the password form is tested in internal/rtsp).
	at := func(token string) string {
		if token == "" {
			return fmt.Sprintf("rtsp://%s/s", srv.RTSPAddr())
		}
		return fmt.Sprintf("rtsp://%s/s?token=%s", srv.RTSPAddr(), url.QueryEscape(token))
	}
	for name, u := range map[string]string{
		"no token":      at(""),
		"garbage token": at("xyz"),
		"other stream":  at(mintToken(t, "other", auth.Grants{Publish: true})),
		"no publish":    at(mintToken(t, "s", auth.Grants{Subscribe: true})),
	} {
		pushRTSP(ctx, t, u, "tcp").refused(ctx, t, name)
	}
	if _, ok := srv.SFU().LookupRoom(sfu.Streams, "s"); ok {
		t.Fatal("a refused publisher went live")
	}
	pushRTSP(ctx, t, at(mintToken(t, "s", auth.Grants{Publish: true})), "udp")
	waitRoom(ctx, t, srv, "s").WaitTracks(ctx, 2)
	for name, u := range map[string]string{
		"read without a token":   at(""),
		"read without subscribe": at(mintToken(t, "s", auth.Grants{Publish: true})),
	} {
		if _, err := rtmptest.Probe(ctx, u, "-rtsp_transport", "tcp"); err == nil {
			t.Fatalf("%s: ffprobe read the stream", name)
		}
	}
	probeRTSP(ctx, t, at(mintToken(t, "s", auth.Grants{Subscribe: true})), "tcp", "h264", "opus")
}
