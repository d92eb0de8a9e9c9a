package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

func TestStreamStatusCountsViewers(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	status := func() (st struct {
		Live    bool
		Viewers int
	}) {
		json.Unmarshal([]byte(get(t, srv.URL()+"/api/streams/live1")), &st)
		return st
	}
	if st := status(); st.Live || st.Viewers != 0 {
		t.Fatalf("before publishing: %+v", st)
	}
	api, _ := client.LoopbackAPI()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	track, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub")
	pub, err := whip.Publish(ctx, srv.URL()+"/whip/live1", whip.Options{API: api}, track)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(ctx)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(33 * time.Millisecond):
			}
			track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, Payload: vp8Keyframe})
		}
	}()
	waitFor(t, "stream live", func() bool { return status().Live })
	for i := 0; i < 2; i++ {
		v, err := whip.Play(ctx, srv.URL()+"/whep/live1", whip.Options{API: api, Kinds: []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close(ctx)
	}
	waitFor(t, "two viewers", func() bool { return status().Viewers == 2 })
	resp, _ := http.Get(srv.URL() + "/api/streams/bad%20name")
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad name: %s", resp.Status)
	}
}
