package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
	"github.com/parley/parley/pkg/client"
)

// Two members meet in a room and relay a signal; then one builds a pion
// PeerConnection from the ICE servers the server handed out.
func Example() {
	// A Parley server on loopback (normally: `parley` running somewhere).
	cfg := config.Default()
	cfg.HTTP, cfg.TURN = "127.0.0.1:0", "127.0.0.1:0"
	cfg.MediaUDP, cfg.MediaTCP = "off", "off" // this example needs no SFU
	cfg.RTMP = "off"
	cfg.RTSP, cfg.SRT = "off", "off"
	cfg.Ops = "off" // nor an operations listener
	srv, err := server.New(cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	ann, err := client.Dial(ctx, srv.URL(), nil) // WebSocket
	if err != nil {
		log.Fatal(err)
	}
	defer ann.Close()
	bob, err := client.Dial(ctx, srv.URL(), &client.Options{Transport: client.HTTP}) // long-poll
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	joined, err := ann.Join(ctx, "demo", "Ann", "")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := bob.Join(ctx, "demo", "Bob", ""); err != nil {
		log.Fatal(err)
	}
	ev := <-ann.Events()
	fmt.Println(ev.Type, ev.Name)

	if err := bob.Signal(ctx, joined.ID, map[string]string{"hello": "Ann"}); err != nil {
		log.Fatal(err)
	}
	sig := <-ann.Events()
	fmt.Println(sig.Type, string(sig.Data))

	pc, err := client.NewPeerConnection(nil, joined.ICEServers, false)
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	fmt.Println(len(pc.GetConfiguration().ICEServers) > 0)
	// Output:
	// peer-joined Bob
	// signal {"hello":"Ann"}
	// true
}
