package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/whip"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
)

// status is the HTTP status of a WHIP/WHEP refusal, or 201 for a session.
func status(t *testing.T, s *whip.Session, err error) int {
	t.Helper()
	if err == nil {
		s.Close(context.Background())
		return http.StatusCreated
	}
	var he *whip.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("not an HTTP refusal: %v", err)
	}
	return he.Status
}

func vp8(t *testing.T) *webrtc.TrackLocalStaticRTP {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestWHIPMountedWithAuth(t *testing.T) {
	secret := "media-test-secret-of-32-bytes-ok"
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = secret })
	now := time.Now()
	viewer, _ := auth.NewToken([]byte(secret), "show", "v", auth.Grants{Subscribe: true}, time.Hour, now)
	publisher, _ := auth.NewToken([]byte(secret), "show", "p", auth.Grants{Publish: true}, time.Hour, now)
	api, _ := client.LoopbackAPI()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cases := []struct {
		path, token string
		want        int
	}{
		{"/whip/show", "", http.StatusUnauthorized},
		{"/whip/show", "garbage", http.StatusUnauthorized},
		{"/whip/show", viewer, http.StatusForbidden},     // no publish grant
		{"/whip/other", publisher, http.StatusForbidden}, // wrong stream
		{"/whep/show", publisher, http.StatusForbidden},  // no subscribe grant
		{"/whep/show", viewer, http.StatusNotFound},      // authorized, but nothing is published
		{"/whip/show", publisher, http.StatusCreated},
	}
	for _, tc := range cases {
		o := whip.Options{API: api, Token: tc.token}
		var got int
		if strings.HasPrefix(tc.path, "/whip/") {
			s, err := whip.Publish(ctx, srv.URL()+tc.path, o, vp8(t))
			got = status(t, s, err)
		} else {
			s, err := whip.Play(ctx, srv.URL()+tc.path, o)
			got = status(t, s, err)
		}
		if got != tc.want {
			t.Errorf("%s with token %.8q: %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}
}

func TestMediaOff(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.MediaUDP = "off" })
	api, _ := client.LoopbackAPI()
	s, err := whip.Publish(context.Background(), srv.URL()+"/whip/x", whip.Options{API: api}, vp8(t))
	if got := status(t, s, err); got != http.StatusServiceUnavailable {
		t.Fatalf("media off: %d", got)
	}
}
