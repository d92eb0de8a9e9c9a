package server_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/internal/sfu"
)

// srtStudio starts ffmpeg publishing the test picture and tone as MPEG-TS
// over SRT with this streamid.
func srtStudio(ctx context.Context, t *testing.T, srv *server.Server, streamid string) *proc {
	t.Helper()
	return run(t, rtmptest.StudioMPEGTS(ctx, srtURL(srv, streamid)))
}

func srtURL(srv *server.Server, streamid string) string {
	return fmt.Sprintf("srt://%s?streamid=%s", srv.SRTAddr(), streamid)
}

// TestSRTToWHEP: ffmpeg publishes H.264 and AAC over SRT; a WHEP viewer
// gets H.264 and Opus; ffmpeg killed and started again, the same viewer
// session gets both again.
func TestSRTToWHEP(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	ff := srtStudio(ctx, t, srv, "publish:s")
	viewer, video, audio := watchLive(ctx, t, srv, "s")

	// SRT runs on UDP: the server learns that the killed ffmpeg is gone
	// when its keepalives stop (5 s); until then the stream is busy and a
	// new ffmpeg is refused, so it tries again, as encoders do.
	ff.kill()
	killed := time.Now()
	waitGone(ctx, t, srv, "s")
	drain(video)
	drain(audio)
	for attempt := 1; ; attempt++ {
		p := srtStudio(ctx, t, srv, "publish:s")
		select {
		case <-video:
			t.Logf("first video packet %s after ffmpeg was killed (attempt %d)", time.Since(killed).Round(time.Millisecond), attempt)
		case <-p.exited:
			retry := time.NewTimer(250 * time.Millisecond) // an encoder's retry interval
			select {
			case <-retry.C:
			case <-ctx.Done():
				t.Fatal("the restarted publisher was never accepted")
			}
			continue
		case <-ctx.Done():
			t.Fatal("no video after the restart")
		}
		break
	}
	watchesAgain(ctx, t, viewer, video, audio)
}

// waitGone waits for the stream's tracks to end.
func waitGone(ctx context.Context, t *testing.T, srv *server.Server, name string) {
	t.Helper()
	pollUntil(ctx, t, "stream "+name+" ending", func() bool { // tracks end without an event a test can wait on
		r, ok := srv.SFU().LookupRoom(sfu.Streams, name)
		return !ok || len(r.Tracks()) == 0
	})
}

// TestSRTRead: ffprobe reads over SRT a stream published over RTMP and
// finds its H.264 and Opus; a stream that is not live is refused.
func TestSRTRead(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	if _, err := rtmptest.Probe(ctx, srtURL(srv, "read:nobody")); err == nil {
		t.Fatal("reading a stream that is not live: ffprobe succeeded")
	}
	studio(ctx, t, fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr()))
	waitTracks(ctx, t, srv, "s", 2)
	got, err := rtmptest.Probe(ctx, srtURL(srv, "read:s"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"h264", "opus"}; !slices.Equal(got, want) {
		t.Fatalf("ffprobe found %v, want %v", got, want)
	}
}

// TestSRTAuth: with auth on, publishing without a token, with a bad one or
// one without the grant is refused; a good token publishes (in both
// streamid forms), and reading needs a subscribe grant.
func TestSRTAuth(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret; c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for name, id := range map[string]string{
		"no token":      "publish:s",
		"other stream":  "publish:s:" + mintToken(t, "other", auth.Grants{Publish: true}),
		"no publish":    "publish:s:" + mintToken(t, "s", auth.Grants{Subscribe: true}),
		"garbage token": "publish:s:xyz",
	} {
		if err := dialSRT(srv, id); err == nil {
			t.Fatalf("%s: publish accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, ok := srv.SFU().LookupRoom(sfu.Streams, "s"); ok {
		t.Fatal("a refused publisher went live")
	}
	srtStudio(ctx, t, srv, "#!::r=s,m=publish,t="+mintToken(t, "s", auth.Grants{Publish: true}))
	if n := waitRoom(ctx, t, srv, "s").WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks", n)
	}
	if err := dialSRT(srv, "read:s"); err == nil {
		t.Fatal("read without a token accepted")
	}
	if err := dialSRT(srv, "read:s:"+mintToken(t, "s", auth.Grants{Subscribe: true})); err != nil {
		t.Fatalf("read with a subscribe token: %v", err)
	}
}

// dialSRT connects with gosrt's caller and hangs up; its error is the
// server's refusal.
func dialSRT(srv *server.Server, streamid string) error {
	cfg := gosrt.DefaultConfig()
	cfg.StreamId = streamid
	c, err := gosrt.Dial("srt", srv.SRTAddr().String(), cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

// TestSRTBusyAndMalformed: garbage datagrams and malformed streamids are
// refused and the server keeps serving; a second publisher of a live
// stream is refused.
func TestSRTBusyAndMalformed(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	u, err := net.Dial("udp", srv.SRTAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		junk := make([]byte, 1+i*7)
		for j := range junk {
			junk[j] = byte(i*31 + j*7)
		}
		if i%2 == 0 && len(junk) >= 16 {
			junk[0] = 0x80 // a control packet: handshake type with a garbage body
			junk[1] = 0
		}
		_, _ = u.Write(junk)
	}
	u.Close()
	for _, id := range []string{"", "publish", "write:s", "publish:bad/name", "publish:s:a:b", "#!::m=publish", "#!::r=s,m=sideways", strings.Repeat("x", 600)} {
		if err := dialSRT(srv, id); err == nil {
			t.Fatalf("streamid %q accepted", id)
		}
	}
	srtStudio(ctx, t, srv, "publish:s")
	if n := waitRoom(ctx, t, srv, "s").WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks", n)
	}
	srtStudio(ctx, t, srv, "publish:s").refused(ctx, t, "second SRT publisher")
	if err := dialSRT(srv, "publish:s"); err == nil {
		t.Fatal("second publisher accepted")
	} else {
		t.Logf("second publisher: %v", err)
	}
}

// TestSRTCodecs: H.264 with Opus passes through to a WHEP viewer; H.265
// goes live as an H.265 track (for the viewers that offer it); a stream
// with nothing usable (MP2 audio only) is closed, and nothing goes live.
func TestSRTCodecs(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	ffmpeg := func(streamid string, codecs ...string) *proc {
		args := append([]string{"-hide_banner", "-nostdin", "-loglevel", "error", "-re",
			"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000"}, codecs...)
		return run(t, exec.CommandContext(ctx, "ffmpeg", append(args, "-f", "mpegts", srtURL(srv, streamid))...))
	}
	ffmpeg("publish:mp2", "-vn", "-c:a", "mp2").refused(ctx, t, "MP2 only")
	if _, ok := srv.SFU().LookupRoom(sfu.Streams, "mp2"); ok {
		t.Fatal("an MP2-only stream went live")
	}
	ffmpeg("publish:hevc", "-an", "-c:v", "libx265", "-x265-params", "log-level=error:bframes=0")
	waitTracks(ctx, t, srv, "hevc", 1)
	if r, _ := srv.SFU().LookupRoom(sfu.Streams, "hevc"); r.Tracks()[0].Codec != "video/H265" {
		t.Fatalf("H.265 stream's track: %+v", r.Tracks())
	}
	ffmpeg("publish:s", "-c:v", "libx264", "-tune", "zerolatency", "-g", "25", "-c:a", "libopus")
	watchLive(ctx, t, srv, "s")
}
