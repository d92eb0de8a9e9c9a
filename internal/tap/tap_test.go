package tap_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/internal/rtmp/rtmptest"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/tap"
	"github.com/pion/webrtc/v4"
)

// silence is an Opus packet (CELT, 20 ms) that decodes to silence.
var silence = []byte{0xf8, 0xff, 0xfe}

// publish publishes H.264 (testsrc2 from ffmpeg, a keyframe a second) and
// Opus silence into stream "s" in real time until ctx ends or the frames
// run out, then ends the publish.
func publish(ctx context.Context, t *testing.T, m *sfu.SFU) <-chan struct{} {
	t.Helper()
	aus := rtmptest.X264Frames(t, 250)
	p, err := ingest.NewPublisher(ingest.Config{SFU: m, Stream: "s", SourceID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sps, pps := tap.H264ParamSets(aus[0])
	v, err := p.H264(sps, pps)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Opus()
	if err != nil {
		t.Fatal(err)
	}
	p.Ready()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer p.Close()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 2*len(aus); i++ {
			pts := time.Duration(i) * 20 * time.Millisecond
			if i%2 == 0 {
				_ = v.WriteAU(aus[i/2], pts)
			}
			_ = a.WriteFrame(silence, pts)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return done
}

func newHub(t *testing.T) (*tap.Hub, *sfu.SFU) {
	t.Helper()
	m, err := sfu.New(sfu.Config{UDP: "127.0.0.1:0", TCP: "off", PublicIP: "127.0.0.1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := tap.New(ctx, tap.Config{SFU: m})
	t.Cleanup(func() {
		cancel()
		m.Close()
		h.Wait()
	})
	return h, m
}

// live is a hub reading stream "s" while it is published; stop ends the
// publish and waits for it.
func live(t *testing.T) (h *tap.Hub, stop func()) {
	t.Helper()
	rtmptest.NeedFFmpeg(t)
	h, m := newHub(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := publish(ctx, t, m)
	return h, func() { cancel(); <-done }
}

func open(t *testing.T, h *tap.Hub, opts tap.Options) *tap.Reader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		r, err := h.Open(ctx, sfu.Streams, "s", opts)
		if err == nil {
			t.Cleanup(r.Close)
			return r
		}
		if !errors.Is(err, tap.ErrNotLive) || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the publish to appear
	}
}

func read(t *testing.T, r *tap.Reader) tap.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := r.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestReadStream(t *testing.T) {
	h, stop := live(t)
	defer stop()
	r := open(t, h, tap.Options{})
	tr := r.Tracks()
	if len(tr) != 2 || tr[0].Codec != "H264" || tr[1].Codec != "Opus" || tr[0].Publisher != "test" {
		t.Fatalf("tracks %+v", tr)
	}
	if len(tr[0].Params) != 2 {
		t.Fatalf("H.264 params %d, want SPS and PPS", len(tr[0].Params))
	}
	first := read(t, r)
	if first.Track != 0 || !first.Key {
		t.Fatalf("first frame %+v is not a keyframe", first)
	}
	last := map[int]time.Duration{0: first.PTS}
	counts := map[int]int{0: 1}
	for counts[0] < 60 || counts[1] < 60 {
		f := read(t, r)
		if p, ok := last[f.Track]; ok && f.PTS <= p {
			t.Fatalf("track %d: PTS %v after %v", f.Track, f.PTS, p)
		}
		last[f.Track] = f.PTS
		counts[f.Track]++
	}
	// A second reader shares the tap and starts at a keyframe too.
	r2 := open(t, h, tap.Options{})
	if f := read(t, r2); f.Track != 0 || !f.Key {
		t.Fatalf("late reader's first frame %+v is not a keyframe", f)
	}
	stop()
	for {
		ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := r.Read(ctx)
		stop()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if s := r.Stats(); s.Dropped != 0 {
		t.Fatalf("a reader that kept up lost %d frames", s.Dropped)
	}
}

// A reader that stops reading loses frames up to the next keyframe;
// another reader of the same tap loses none.
func TestSlowReader(t *testing.T) {
	h, stop := live(t)
	defer stop()

	slow := open(t, h, tap.Options{Queue: 8})
	fast := open(t, h, tap.Options{})
	for slow.Stats().Dropped == 0 {
		read(t, fast)
	}
	for range 8 { // the queue's frames
		read(t, slow)
	}
	if f := read(t, slow); f.Track != 0 || !f.Key {
		t.Fatalf("after drops the slow reader got %+v, want a keyframe", f)
	}
	if d := fast.Stats().Dropped; d != 0 {
		t.Fatalf("the reader that kept up lost %d frames", d)
	}
}

// With AAC, Opus comes out as AAC-LC access units through ffmpeg.
func TestAAC(t *testing.T) {
	h, stop := live(t)
	defer stop()

	r := open(t, h, tap.Options{AAC: true})
	tr := r.Tracks()
	if tr[1].Codec != "AAC" || len(tr[1].Params) != 1 {
		t.Fatalf("audio track %+v", tr[1])
	}
	for n := 0; n < 20; {
		if f := read(t, r); f.Track == 1 && len(f.AU[0]) > 0 {
			n++
		}
	}
}

func TestNotLive(t *testing.T) {
	h, _ := newHub(t)
	if _, err := h.Open(context.Background(), sfu.Streams, "nobody", tap.Options{}); !errors.Is(err, tap.ErrNotLive) {
		t.Fatalf("err %v, want ErrNotLive", err)
	}
}

// askingSource is a publisher that sends a keyframe only when asked, as
// browsers do; it counts the requests.
type askingSource struct {
	asks atomic.Int32
	kf   chan struct{}
}

func (*askingSource) SourceID() string { return "asked" }
func (s *askingSource) RequestKeyframe(uint32) {
	s.asks.Add(1)
	select {
	case s.kf <- struct{}{}:
	default:
	}
}

// TestKeyframeInterval: a publisher that sends keyframes only when asked
// is asked again once a reader's KeyframeInterval passed without one.
func TestKeyframeInterval(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	h, m := newHub(t)
	aus := rtmptest.X264Frames(t, 25) // one IDR, then P-frames
	src := &askingSource{kf: make(chan struct{}, 1)}
	pub, err := m.Publish(sfu.Streams, "s", src, sfu.TrackSpec{TrackID: "v", StreamID: "s",
		Codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, PayloadType: 102}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.End()
	enc := &rtph264.Encoder{PayloadType: 102, PacketizationMode: 1}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sent := make(chan struct{})
	go func() { // P-frames at 25 per second, the IDR when asked, until the test ends
		defer close(sent)
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			au := aus[1+i%(len(aus)-1)]
			select {
			case <-src.kf:
				au = aus[0]
			default:
			}
			pkts, _ := enc.Encode(au)
			for _, p := range pkts {
				p.Timestamp = uint32(i * 3600)
				b, _ := p.Marshal()
				_ = pub.WriteRTP("", b)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { cancel(); <-sent }()
	open(t, h, tap.Options{KeyframeInterval: 300 * time.Millisecond})
	n0, start := src.asks.Load(), time.Now()
	for src.asks.Load() == n0 {
		if time.Since(start) > 20*time.Second {
			t.Fatal("the publisher was never asked for a keyframe")
		}
		time.Sleep(10 * time.Millisecond) // polling the count
	}
}
