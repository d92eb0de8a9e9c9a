package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/parley/parley/internal/config"
)

// The signaling limits come from the config: connections per address,
// and the trusted proxies whose X-Forwarded-For names the client.
func TestSignalLimitsFromConfig(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.ConnsPerIP = 1
		c.TrustedProxies = []string{"127.0.0.0/8"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		xff  string
		want int
	}{{"", http.StatusCreated}, {"", http.StatusTooManyRequests}, {"203.0.113.9", http.StatusCreated}} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL()+"/api/session", nil)
		if tc.xff != "" {
			req.Header.Set("X-Forwarded-For", tc.xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("X-Forwarded-For %q: %s, want %d", tc.xff, resp.Status, tc.want)
		}
	}
}
