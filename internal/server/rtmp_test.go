package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/transcode"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// studio starts ffmpeg publishing a test picture and a 440 Hz tone over
// RTMP, as OBS would; it ends with ctx or the test.
func studio(ctx context.Context, t *testing.T, url string) *proc {
	t.Helper()
	return run(t, rtmptest.Studio(ctx, url))
}

// run starts an ffmpeg command, logging its output; it ends with its
// context or the test.
func run(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	cmd.Stderr = &testLog{t: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	return p
}

// proc is a running ffmpeg; exited is closed (and err set) when it ends.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// refused waits for ffmpeg to give up with an error.
func (p *proc) refused(ctx context.Context, t *testing.T, what string) {
	t.Helper()
	select {
	case <-p.exited:
		if p.err == nil {
			t.Fatalf("%s: ffmpeg succeeded", what)
		}
	case <-ctx.Done():
		t.Fatalf("%s: publish not refused", what)
	}
}

type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Logf("ffmpeg: %s", p)
	return len(p), nil
}

// watch plays a stream over WHEP and reports its H.264 and sane Opus packets.
func watch(ctx context.Context, t *testing.T, url string) (sess *whip.Session, video, audio chan struct{}) {
	t.Helper()
	api, _ := client.LoopbackAPI()
	video, audio = make(chan struct{}, 4096), make(chan struct{}, 4096)
	s, err := whip.Play(ctx, url, whip.Options{API: api, OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		mime := tr.Codec().MimeType
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			switch {
			case mime == webrtc.MimeTypeH264 && len(p.Payload) > 0:
				select {
				case video <- struct{}{}:
				default:
				}
			case mime == webrtc.MimeTypeOpus && transcode.OpusSamples(p.Payload) == 960 && len(p.Payload) > 3:
				select {
				case audio <- struct{}{}:
				default:
				}
			}
		}
	}})
	if err != nil {
		t.Fatalf("WHEP: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, video, audio
}

func waitN(ctx context.Context, t *testing.T, ch chan struct{}, n int, what string) {
	t.Helper()
	for i := range n {
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%s: got %d packets of %d", what, i, n)
		}
	}
}

func drain(ch chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// TestRTMPToWHEP: ffmpeg publishes H.264 and AAC over RTMP; a WHEP viewer
// gets H.264 and Opus; ffmpeg killed and started again, the same viewer
// session gets both again without signaling anew.
func TestRTMPToWHEP(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr())
	ff := studio(ctx, t, url)
	viewer, video, audio := watchLive(ctx, t, srv, "s")

	// The studio drops and comes back.
	ff.kill()
	drain(video)
	drain(audio)
	studio(ctx, t, url)
	began := time.Now()
	waitN(ctx, t, video, 1, "H.264 after the restart")
	t.Logf("first video packet %s after the new ffmpeg started", time.Since(began).Round(time.Millisecond))
	watchesAgain(ctx, t, viewer, video, audio)
}

// watchLive waits for the stream's two tracks and plays it over WHEP
// until H.264 and Opus flow.
func watchLive(ctx context.Context, t *testing.T, srv *server.Server, stream string) (viewer *whip.Session, video, audio chan struct{}) {
	t.Helper()
	if n := waitRoom(ctx, t, srv, stream).WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks live, want 2", n)
	}
	viewer, video, audio = watch(ctx, t, srv.URL()+"/whep/"+stream)
	waitN(ctx, t, video, 50, "H.264")
	waitN(ctx, t, audio, 25, "Opus")
	return viewer, video, audio
}

// watchesAgain checks that a viewer whose publisher restarted gets
// H.264 and Opus again in the same session.
func watchesAgain(ctx context.Context, t *testing.T, viewer *whip.Session, video, audio chan struct{}) {
	t.Helper()
	// The old publisher cannot produce this many packets after its death.
	waitN(ctx, t, video, 100, "H.264 after the restart")
	waitN(ctx, t, audio, 50, "Opus after the restart")
	if st := viewer.PeerConnection().ConnectionState(); st != webrtc.PeerConnectionStateConnected {
		t.Fatalf("viewer state %s", st)
	}
}

// waitTracks waits for the stream to have n tracks live.
func waitTracks(ctx context.Context, t *testing.T, srv *server.Server, name string, n int) {
	t.Helper()
	if got := waitRoom(ctx, t, srv, name).WaitTracks(ctx, n); got != n {
		t.Fatalf("stream %s: %d tracks live, want %d", name, got, n)
	}
}

// waitRoom waits for the stream's room to exist.
func waitRoom(ctx context.Context, t *testing.T, srv *server.Server, name string) *sfu.Room {
	t.Helper()
	var room *sfu.Room
	// the room appears with the first track: no event to wait on before it exists
	pollUntil(ctx, t, "stream "+name+" going live", func() bool {
		r, ok := srv.SFU().LookupRoom(sfu.Streams, name)
		room = r
		return ok
	})
	return room
}

// pollUntil checks cond every 10 ms until it holds, failing the test when
// ctx ends first; for states no event announces.
func pollUntil(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// TestRTMPAuth: with auth on, a publish without a token or with one for
// another stream is refused (ffmpeg exits); the right token publishes.
func TestRTMPAuth(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret; c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr())
	for name, u := range map[string]string{
		"no token":      base,
		"other stream":  base + "?token=" + mintToken(t, "other", auth.Grants{Publish: true}),
		"no publish":    base + "?token=" + mintToken(t, "s", auth.Grants{Subscribe: true}),
		"garbage token": base + "?token=xyz",
	} {
		studio(ctx, t, u).refused(ctx, t, name)
	}
	if _, ok := srv.SFU().LookupRoom(sfu.Streams, "s"); ok {
		t.Fatal("a refused publisher went live")
	}
	studio(ctx, t, base+"?token="+mintToken(t, "s", auth.Grants{Publish: true}))
	if n := waitRoom(ctx, t, srv, "s").WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks", n)
	}
}

// TestRTMPBusyAndMalformed: a malformed handshake is closed and the server
// keeps serving; a second publisher of a live stream is refused, over RTMP
// and over WHIP.
func TestRTMPBusyAndMalformed(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := net.Dial("tcp", srv.RTMPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	junk := make([]byte, 1537)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	junk[0] = 0x42 // not RTMP version 3
	_, _ = c.Write(junk)
	// Closed: EOF, or a reset when it closed with our bytes unread.
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("malformed handshake: connection not closed by the server: %v", err)
	}
	c.Close()

	url := fmt.Sprintf("rtmp://%s/live/s", srv.RTMPAddr())
	studio(ctx, t, url)
	if n := waitRoom(ctx, t, srv, "s").WaitTracks(ctx, 2); n != 2 {
		t.Fatalf("%d tracks", n)
	}
	studio(ctx, t, url).refused(ctx, t, "second publisher")
	// WHIP on the same name while RTMP holds it: 409.
	api, _ := client.LoopbackAPI()
	pub, err := whip.Publish(ctx, srv.URL()+"/whip/s", whip.Options{API: api}, vp8(t))
	if got := status(t, pub, err); got != 409 {
		t.Fatalf("WHIP publish of a stream live over RTMP: %d, want 409", got)
	}
}
