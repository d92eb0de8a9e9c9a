package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
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

// Row 6 of issue #10 (the refresh): TURN credentials are short-lived now
// (--turn-ttl, 10 min by default), so a member that stays connected is sent
// fresh ones (ice-servers) at 3/4 of their lifetime.
func TestRow06TURNCredentialsRefreshed(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.TURNTTL = config.Duration(2 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	j, err := c.Join(ctx, "stay", "x", "")
	if err != nil {
		t.Fatal(err)
	}
	expiry := func(list []protocol.ICEServer) time.Time {
		for _, is := range list {
			if is.Username == "" {
				continue
			}
			exp, user, ok := auth.TURNExpiry(is.Username)
			if !ok || user != j.ID || is.Credential != auth.TURNPassword(srv.TURNSecret(), is.Username) {
				t.Fatalf("credential %+v", is)
			}
			return exp
		}
		t.Fatalf("no TURN credential in %+v", list)
		return time.Time{}
	}
	first := expiry(j.ICEServers)
	for {
		select {
		case m := <-c.Events():
			if m.Type != protocol.TypeICEServers {
				continue
			}
			if exp := expiry(m.ICEServers); !exp.After(first) {
				t.Fatalf("refreshed credential expires %v, the first %v", exp, first)
			}
			return
		case <-ctx.Done():
			t.Fatal("no fresh ICE servers before the first ones expired")
		}
	}
}
