package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
)

// Calls, streams and shows are separate namespaces: WHEP on a running group
// call's name finds nothing live, WHIP there makes a separate stream the
// call never sees, and a show's audio is not reachable by /whep/.
func TestNamespacesDoNotMix(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.PublicIP = "127.0.0.1" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api, _ := client.LoopbackAPI()

	// A group call named "team" with a publisher and a watcher.
	a := joinSFU(t, srv.URL(), "team", "a")
	b := joinSFU(t, srv.URL(), "team", "b")
	track := a.publish()
	stop := make(chan struct{})
	defer close(stop)
	go sendKeyframes(stop, track)
	select {
	case <-b.got:
	case <-ctx.Done():
		t.Fatal("the call's member never got video")
	}

	// WHEP on the call's name: not live.
	if _, err := whip.Play(ctx, srv.URL()+"/whep/team", whip.Options{API: api}); status(t, nil, err) != 404 {
		t.Fatalf("WHEP on a call's name: %v", err)
	}

	// WHIP on the call's name is a stream of its own: its viewers get its
	// media, the call's members never see it.
	streamTrack := vp8(t)
	pub, err := whip.Publish(ctx, srv.URL()+"/whip/team", whip.Options{API: api}, streamTrack)
	if err != nil {
		t.Fatalf("WHIP on a call's name: %v", err)
	}
	defer pub.Close(context.Background())
	go sendKeyframes(stop, streamTrack)
	got := make(chan string, 4)
	waitLive(ctx, t, srv, sfu.Streams, "team")
	viewer, err := whip.Play(ctx, srv.URL()+"/whep/team", whip.Options{API: api, OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		got <- tr.StreamID()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close(context.Background())
	select {
	case id := <-got:
		if id != "pub" {
			t.Fatalf("the stream's viewer got stream %q, not the WHIP publisher's", id)
		}
	case <-ctx.Done():
		t.Fatal("the stream's viewer got no track")
	}
	// The call still has a's track alone, and its member got nothing new.
	call, _ := srv.SFU().LookupRoom(sfu.Calls, "team")
	if ts := call.Tracks(); len(ts) != 1 || ts[0].Publisher != a.id {
		t.Fatalf("the call's tracks: %+v", ts)
	}
	select {
	case tr := <-b.got:
		t.Fatalf("a call member got a track from the stream: %s", tr.StreamID())
	default:
	}

	// A show's audio: the show endpoint has it, the public one does not.
	audio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "host")
	host, err := whip.Publish(ctx, srv.URL()+"/api/show-media/whip/show-party", whip.Options{API: api}, audio)
	if err != nil {
		t.Fatalf("show audio publish: %v", err)
	}
	defer host.Close(context.Background())
	if _, err := whip.Publish(ctx, srv.URL()+"/api/show-media/whip/party", whip.Options{API: api}, vp8(t)); err == nil {
		t.Fatal("the show endpoint took a stream that is not a show's audio")
	}
	go func() {
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0xf8, 0xff, 0xfe}})
		}
	}()
	waitLive(ctx, t, srv, sfu.Shows, "show-party")
	screen, err := whip.Play(ctx, srv.URL()+"/api/show-media/whep/show-party", whip.Options{API: api, Kinds: []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}})
	if err != nil {
		t.Fatal(err)
	}
	screen.Close(context.Background())
	if _, err := whip.Play(ctx, srv.URL()+"/whep/show-party", whip.Options{API: api}); status(t, nil, err) != 404 {
		t.Fatalf("WHEP reached a show's audio: %v", err)
	}
}

// waitLive waits until the stream's publisher has a track (tracks appear
// with their first packets), so that a viewer finds it live.
func waitLive(ctx context.Context, t *testing.T, srv *server.Server, ns sfu.Namespace, name string) {
	t.Helper()
	room, ok := srv.SFU().LookupRoom(ns, name)
	if !ok || room.WaitTracks(ctx, 1) < 1 {
		t.Fatalf("%s %s never went live", ns, name)
	}
}

// sendKeyframes writes a VP8 keyframe every 33 ms until stop closes.
func sendKeyframes(stop chan struct{}, track *webrtc.TrackLocalStaticRTP) {
	for seq := uint16(0); ; seq++ {
		select {
		case <-stop:
			return
		case <-time.After(33 * time.Millisecond):
		}
		track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, Payload: vp8Keyframe})
	}
}
