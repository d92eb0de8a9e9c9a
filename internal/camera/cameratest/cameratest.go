// Package cameratest plays IP cameras in tests: an RTSP server (gortsplib)
// fed by ffmpeg (testsrc2 in H.264 and a 440 Hz sine in AAC, pushed with
// ANNOUNCE/RECORD) that serves the same stream to whoever DESCRIBEs and
// PLAYs it, as a camera would; and broken cameras: a refused port, a
// silent one and one that answers garbage.
package cameratest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"testing"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"
)

// Camera is an RTSP server holding one stream, pushed to it by ffmpeg.
type Camera struct {
	srv *gortsplib.Server

	mu        sync.Mutex
	stream    *gortsplib.ServerStream
	publisher *gortsplib.ServerSession
	ready     chan struct{} // closed when a publisher records
	readers   int
	user      string // readers must log in when set
	pass      string
}

// RequireAuth makes readers log in with user and pass (Basic or Digest).
func (c *Camera) RequireAuth(user, pass string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user, c.pass = user, pass
}

// StartMJPEG runs a camera that offers only an M-JPEG track (which Parley
// does not forward), announced from the start; it never sends a packet.
func StartMJPEG(t testing.TB) *Camera {
	t.Helper()
	c := Start(t)
	desc := &description.Session{Medias: []*description.Media{{
		Type: description.MediaTypeVideo, Formats: []format.Format{&format.MJPEG{}},
	}}}
	st := &gortsplib.ServerStream{Server: c.srv, Desc: desc}
	if err := st.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	c.mu.Lock()
	c.stream = st
	close(c.ready)
	c.mu.Unlock()
	return c
}

// Start runs a camera on 127.0.0.1 until the test ends. Its URL
// (rtsp://127.0.0.1:port/cam) plays once Feed's ffmpeg has pushed.
func Start(t testing.TB) *Camera {
	t.Helper()
	c := &Camera{ready: make(chan struct{})}
	c.srv = &gortsplib.Server{Handler: c, RTSPAddress: "127.0.0.1:0"}
	if err := c.srv.Start(); err != nil {
		t.Fatalf("camera: %v", err)
	}
	t.Cleanup(c.srv.Close)
	return c
}

// URL is where the camera's stream plays (and where Feed pushes it).
func (c *Camera) URL() string {
	return "rtsp://" + c.srv.NetListener().Addr().String() + "/cam"
}

// Addr is the camera's RTSP address.
func (c *Camera) Addr() string { return c.srv.NetListener().Addr().String() }

// Ready is closed once ffmpeg records into the camera.
func (c *Camera) Ready() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// Readers is how many sessions play the stream now.
func (c *Camera) Readers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readers
}

// Feed starts ffmpeg pushing testsrc2 (H.264, a keyframe a second) and a
// 440 Hz sine (AAC) in real time into the camera over TCP; it ends with
// ctx. The caller starts and waits for the command.
func (c *Camera) Feed(ctx context.Context) *exec.Cmd {
	return exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440",
		"-c:v", "libx264", "-tune", "zerolatency", "-g", "25", "-c:a", "aac",
		"-f", "rtsp", "-rtsp_transport", "tcp", c.URL())
}

// OnSessionClose ends the stream when its publisher goes.
func (c *Camera) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != nil && ctx.Session == c.publisher {
		c.stream.Close()
		c.stream, c.publisher = nil, nil
		c.ready = make(chan struct{})
		return
	}
	if ctx.Session.State() == gortsplib.ServerSessionStatePlay {
		c.readers--
	}
}

// OnDescribe serves the stream being pushed.
func (c *Camera) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.user != "" && !ctx.Conn.VerifyCredentials(ctx.Request, c.user, c.pass) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	if c.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

// OnAnnounce takes ffmpeg's stream.
func (c *Camera) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, fmt.Errorf("already publishing")
	}
	st := &gortsplib.ServerStream{Server: c.srv, Desc: ctx.Description}
	if err := st.Initialize(); err != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}
	c.stream, c.publisher = st, ctx.Session
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup accepts the publisher's tracks and serves the stream's.
func (c *Camera) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

// OnPlay counts a reader.
func (c *Camera) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	c.mu.Lock()
	c.readers++
	c.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnRecord forwards the publisher's packets to the readers.
func (c *Camera) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	c.mu.Lock()
	st := c.stream
	close(c.ready)
	c.mu.Unlock()
	ctx.Session.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
		_ = st.WritePacketRTP(medi, pkt)
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// RefusedURL is an rtsp:// URL on a loopback port nothing listens on.
func RefusedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "rtsp://" + addr + "/cam"
}

// Silent serves TCP and never answers (a camera that hangs); its URL is
// returned. Connections close when the test ends.
func Silent(t testing.TB) string {
	return serve(t, func(net.Conn) {})
}

// Garbage answers every connection with bytes that are not RTSP, then
// hangs up.
func Garbage(t testing.TB) string {
	return serve(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		junk := []byte("SSH-2.0-OpenSSH_9.2\r\n\x00\x01\xff\xfe garbage \r\n\r\n")
		_, _ = c.Write(junk)
		c.Close()
	})
}

// serve runs a TCP server whose connections get answer, then are read
// (and their bytes ignored) until the client closes them.
func serve(t testing.TB, answer func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				answer(c)
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "rtsp://" + l.Addr().String() + "/cam"
}
