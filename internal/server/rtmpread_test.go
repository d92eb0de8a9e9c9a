package server_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// TestRTMPRead: ffprobe reads over RTMP a stream published over RTMP
// (H.264 + AAC→Opus) and one published over WHIP (H.264 + Opus): both
// come out as H.264 and AAC, Opus transcoded once per stream.
func TestRTMPRead(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := fmt.Sprintf("rtmp://%s/live/", srv.RTMPAddr())

	studio(ctx, t, base+"s")
	waitTracks(ctx, t, srv, "s", 2)
	got, err := rtmptest.Probe(ctx, base+"s")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"aac", "h264"}; !slices.Equal(got, want) {
		t.Fatalf("RTMP-published stream read over RTMP: %v, want %v", got, want)
	}

	whipPublish(ctx, t, srv.URL()+"/whip/w")
	waitTracks(ctx, t, srv, "w", 2)
	got, err = rtmptest.Probe(ctx, base+"w")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"aac", "h264"}; !slices.Equal(got, want) {
		t.Fatalf("WHIP-published stream read over RTMP: %v, want %v", got, want)
	}

	if _, err := rtmptest.Probe(ctx, base+"nothing"); err == nil {
		t.Fatal("a stream that is not live was read")
	}
}

// TestRTMPReadAuth: with auth on, reading needs a token granting
// subscribe on the stream.
func TestRTMPReadAuth(t *testing.T) {
	_, ctx, base := authStudio(t)
	for name, u := range map[string]string{
		"no token":     base,
		"other stream": base + "?token=" + mintToken(t, "other", auth.Grants{Subscribe: true}),
		"publish only": base + "?token=" + mintToken(t, "s", auth.Grants{Publish: true}),
	} {
		if _, err := rtmptest.Probe(ctx, u); err == nil {
			t.Fatalf("%s: read allowed", name)
		}
	}
	if got, err := rtmptest.Probe(ctx, base+"?token="+mintToken(t, "s", auth.Grants{Subscribe: true})); err != nil || len(got) != 2 {
		t.Fatalf("reading with a subscribe token: %v %v", got, err)
	}
}

// whipPublish publishes 25 fps H.264 (baseline, no B-frames, a keyframe a
// second) and a 440 Hz Opus tone to a WHIP url until the test ends, as a
// browser would.
func whipPublish(ctx context.Context, t testing.TB, url string) {
	t.Helper()
	h264File, oggFile := whipClip(ctx, t)
	whipPublishClip(ctx, t, url, h264File, oggFile)
}

// whipClip encodes the 4 s that whipPublish loops: H.264 and Ogg Opus files.
func whipClip(ctx context.Context, t testing.TB) (h264File, oggFile string) {
	t.Helper()
	dir := t.TempDir()
	h264File, oggFile = filepath.Join(dir, "v.h264"), filepath.Join(dir, "a.ogg")
	for _, args := range [][]string{
		{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "4", "-c:v", "libx264", "-profile:v", "baseline",
			"-tune", "zerolatency", "-g", "25", "-bsf:v", "h264_mp4toannexb", "-f", "h264", h264File},
		{"-f", "lavfi", "-i", "sine=f=440:sample_rate=48000", "-t", "4", "-ac", "2", "-c:a", "libopus",
			"-frame_duration", "20", "-page_duration", "20000", "-f", "ogg", oggFile},
	} {
		if out, err := exec.CommandContext(ctx, "ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg: %v: %s", err, out)
		}
	}
	return h264File, oggFile
}

// whipPublishClip publishes whipClip's files over and over.
func whipPublishClip(ctx context.Context, t testing.TB, url, h264File, oggFile string) {
	t.Helper()
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, "video", "w")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "w")
	if err != nil {
		t.Fatal(err)
	}
	api, _ := client.LoopbackAPI()
	sess, err := whip.Publish(ctx, url, whip.Options{API: api}, video, audio)
	if err != nil {
		t.Fatalf("WHIP: %v", err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	t.Cleanup(func() {
		stop()
		<-done
		<-done
		sess.Close(context.Background())
	})
	go func() { // video: access units at 25 fps
		defer func() { done <- struct{}{} }()
		loopFile(sctx, h264File, 40*time.Millisecond, func(f *os.File) (func() ([]byte, error), error) {
			r, err := h264reader.NewReader(f)
			if err != nil {
				return nil, err
			}
			return func() ([]byte, error) { // one access unit
				var au []byte
				for {
					nal, err := r.NextNAL()
					if err != nil {
						return nil, err
					}
					au = append(append(au, 0, 0, 0, 1), nal.Data...)
					if nal.UnitType == h264reader.NalUnitTypeCodedSliceIdr || nal.UnitType == h264reader.NalUnitTypeCodedSliceNonIdr {
						return au, nil
					}
				}
			}, nil
		}, func(b []byte) error { return video.WriteSample(media.Sample{Data: b, Duration: 40 * time.Millisecond}) })
	}()
	go func() { // audio: 20 ms Opus packets
		defer func() { done <- struct{}{} }()
		loopFile(sctx, oggFile, 20*time.Millisecond, func(f *os.File) (func() ([]byte, error), error) {
			r, _, err := oggreader.NewWith(f)
			if err != nil {
				return nil, err
			}
			return func() ([]byte, error) {
				for {
					page, _, err := r.ParseNextPage()
					if err != nil || len(page) >= 8 && string(page[:4]) != "Opus" {
						return page, err
					}
				}
			}, nil
		}, func(b []byte) error { return audio.WriteSample(media.Sample{Data: b, Duration: 20 * time.Millisecond}) })
	}()
}

// loopFile sends a file's frames, one per period, over and over until ctx
// ends or write fails. Frame i goes at start + i*period: a loaded machine
// that falls behind catches up, so the media time keeps to the wall clock.
func loopFile(ctx context.Context, path string, period time.Duration, frames func(*os.File) (func() ([]byte, error), error), write func([]byte) error) {
	start := time.Now()
	timer := time.NewTimer(0) // the media's rate, not a wait for an event
	defer timer.Stop()
	<-timer.C
	for i := 1; ; {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		next, err := frames(f)
		for err == nil {
			var b []byte
			if b, err = next(); err != nil {
				break
			}
			if err = write(b); err != nil {
				f.Close()
				return
			}
			timer.Reset(time.Until(start.Add(time.Duration(i) * period)))
			i++
			select {
			case <-ctx.Done():
				f.Close()
				return
			case <-timer.C:
			}
		}
		f.Close()
	}
}

// authStudio starts a server with auth on and ffmpeg publishing stream
// "s" over RTMP with a publish token; base is the stream's RTMP URL, ctx
// ends with the test (a minute at most).
func authStudio(t *testing.T) (srv *server.Server, ctx context.Context, base string) {
	t.Helper()
	rtmptest.NeedFFmpeg(t)
	srv = startServer(t, func(c *config.Config) { c.AuthSecret = testSecret; c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	base = fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr())
	studio(ctx, t, base+"?token="+mintToken(t, "s", auth.Grants{Publish: true}))
	waitTracks(ctx, t, srv, "s", 2)
	return srv, ctx, base
}
