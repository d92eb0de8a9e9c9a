package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// publishVP8 publishes stream over WHIP with a pion peer sending VP8
// keyframes until the test ends or end is called.
func publishVP8(ctx context.Context, t *testing.T, url string) (end func()) {
	t.Helper()
	api, _ := client.LoopbackAPI()
	track := vp8(t)
	pub, err := whip.Publish(ctx, url, whip.Options{API: api}, track)
	if err != nil {
		t.Fatalf("WHIP %s: %v", url, err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(33 * time.Millisecond):
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, Payload: vp8Keyframe})
		}
	}()
	var once sync.Once
	end = func() {
		once.Do(func() {
			close(stop)
			<-done
			pub.Close(context.Background())
		})
	}
	t.Cleanup(end)
	return end
}

// TestWHEPViewerCap: --max-webrtc-viewers 2 caps every stream, a stream's
// own max_webrtc_viewers: 1 overrides it; a viewer past the cap gets 503
// webrtc_viewer_limit (what the watch page falls back to HLS on), and a
// viewer who leaves frees the seat.
func TestWHEPViewerCap(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.PublicIP = "127.0.0.1"
		c.MaxWebRTCViewers = 2
		c.Streams = map[string]config.Stream{"one": {MaxWebRTCViewers: 1}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api, _ := client.LoopbackAPI()
	publishVP8(ctx, t, srv.URL()+"/whip/one")
	publishVP8(ctx, t, srv.URL()+"/whip/two")

	play := func(stream string) (*whip.Session, error) {
		return whip.Play(ctx, srv.URL()+"/whep/"+stream, whip.Options{API: api, Kinds: []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}})
	}
	capped := func(stream string, err error) {
		t.Helper()
		var he *whip.HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || he.Code != httperr.CodeWebRTCViewerLimit {
			t.Fatalf("viewer of %s past the cap: got %v, want 503 %s", stream, err, httperr.CodeWebRTCViewerLimit)
		}
	}

	first, err := play("one")
	if err != nil {
		t.Fatalf("first viewer of one: %v", err)
	}
	_, err = play("one")
	capped("one", err)

	for i := range 2 {
		v, err := play("two")
		if err != nil {
			t.Fatalf("viewer %d of two (global cap 2): %v", i+1, err)
		}
		defer v.Close(ctx)
	}
	_, err = play("two")
	capped("two", err)
	// What a browser sees: 503, Retry-After, the JSON code.
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.URL()+"/whep/two", "application/sdp", strings.NewReader(offer.SDP))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":"webrtc_viewer_limit"`) {
		t.Errorf("raw WHEP past the cap: %s, Retry-After %q, %s", resp.Status, resp.Header.Get("Retry-After"), body)
	}

	// The first viewer of "one" leaves: its seat is free again.
	first.Close(ctx)
	var again *whip.Session
	waitFor(t, "a viewer admitted after the first left", func() bool {
		again, err = play("one")
		return err == nil
	})
	defer again.Close(ctx)
	_, err = play("one")
	capped("one", err)
}
