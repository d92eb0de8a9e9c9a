package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
)

func post(t *testing.T, url, token, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestWHIPMountedWithAuth(t *testing.T) {
	secret := "s3"
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = secret })
	now := time.Now()
	viewer, _ := auth.NewToken([]byte(secret), "show", "v", auth.Grants{Subscribe: true}, time.Hour, now)
	publisher, _ := auth.NewToken([]byte(secret), "show", "p", auth.Grants{Publish: true}, time.Hour, now)
	cases := []struct {
		path, token string
		want        int
	}{
		{"/whip/show", "", http.StatusUnauthorized},
		{"/whip/show", "garbage", http.StatusUnauthorized},
		{"/whip/show", viewer, http.StatusUnauthorized},     // no publish grant
		{"/whip/other", publisher, http.StatusUnauthorized}, // wrong stream
		{"/whip/show", publisher, http.StatusBadRequest},    // authorized, but the SDP is junk
		{"/whep/show", viewer, http.StatusBadRequest},
	}
	for _, tc := range cases {
		if got := post(t, srv.URL()+tc.path, tc.token, "not sdp").StatusCode; got != tc.want {
			t.Errorf("%s with token %.8q: %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}
}

func TestMediaOff(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.MediaUDP = "off" })
	if got := post(t, srv.URL()+"/whip/x", "", "v=0").StatusCode; got != http.StatusServiceUnavailable {
		t.Fatalf("media off: %d", got)
	}
}
