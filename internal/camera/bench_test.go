package camera_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley/parley/internal/camera"
	"github.com/parley/parley/internal/camera/cameratest"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// BenchmarkPull20Cameras pulls 20 streams at once (each its own RTSP
// session, H.264 to the SFU and AAC transcoded to Opus by its own ffmpeg)
// from a camera fed by ffmpeg, for 10 s per iteration, and reports the
// packets pulled per second and the share lost (sequence gaps: packets
// the camera had to drop because a puller fell behind, or that never
// arrived). Run with -benchtime 1x.
func BenchmarkPull20Cameras(b *testing.B) {
	rtmptest.NeedFFmpeg(b)
	const cams = 20
	const spell = 10 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cam := cameratest.Start(b)
	feed := cam.Feed(ctx)
	if err := feed.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = feed.Process.Kill(); _ = feed.Wait() })
	<-cam.Ready()
	live := make(chan string, cams)
	m := camera.New(camera.Config{SFU: newSFU(b), OnStatus: func(name string, st camera.Status) {
		if st.State == camera.Live {
			live <- name
		} else if st.State == camera.Error {
			b.Errorf("%s: %s", name, st.Error)
		}
	}})
	b.Cleanup(m.Close)
	for i := range cams {
		if err := m.Add(fmt.Sprintf("cam%d", i), config.Stream{Source: cam.URL(), Transport: "tcp"}, "config"); err != nil {
			b.Fatal(err)
		}
	}
	for range cams {
		<-live
	}
	if n := cam.Readers(); n != cams {
		b.Fatalf("%d readers", n)
	}
	b.ResetTimer()
	var got, lost uint64
	for range b.N {
		before := m.Stats()
		time.Sleep(spell) // the measurement spell, not synchronization
		after := m.Stats()
		got += after.Received - before.Received
		lost += after.Lost - before.Lost
	}
	b.StopTimer()
	b.ReportMetric(float64(got)/(spell.Seconds()*float64(b.N)), "packets/s")
	b.ReportMetric(100*float64(lost)/float64(max(got+lost, 1)), "%lost")
}
