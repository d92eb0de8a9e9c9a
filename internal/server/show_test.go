package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
)

func postJSON(t *testing.T, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// The show API is mounted and token-protected when auth is on: tokens
// name the stream "show-<name>" (or a pattern such as "show-*").
func TestShowAPIWithAuth(t *testing.T) {
	secret := []byte("show-test-secret-of-32-bytes-ok!")
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = string(secret) })
	now := time.Now()
	mint := func(room string, g auth.Grants) string {
		tok, err := auth.NewToken(secret, room, "x", g, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	host := mint("show-party", auth.Grants{Publish: true})
	admin := mint("show-*", auth.Grants{Admin: true})
	screen := mint("show-party", auth.Grants{Subscribe: true})
	other := mint("show-other", auth.Grants{Publish: true})
	bare := mint("party", auth.Grants{Publish: true}) // the show's name, not its stream

	base := srv.URL() + "/api/shows/party/broadcast"
	for _, tc := range []struct {
		token string
		want  int
	}{
		{"", 401}, {"junk", 401}, {screen, 403}, {other, 403}, {bare, 403}, {host, 200}, {admin, 200},
	} {
		if code, m := postJSON(t, base, tc.token, `{"mode":"hue"}`); code != tc.want {
			t.Errorf("broadcast with token %.12q: %d %v, want %d", tc.token, code, m, tc.want)
		}
	}
	if code, m := postJSON(t, base, host, `{"mode":"hue","oops":1}`); code != 400 || m["error"].(map[string]any)["code"] != "bad-body" {
		t.Errorf("bad body: %d %v", code, m)
	}

	ws := "ws" + strings.TrimPrefix(srv.URL(), "http") + "/api/shows/party/ws"
	dial := func(q string) (*websocket.Conn, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, ws+"?"+q, nil)
		if err != nil {
			if resp == nil {
				t.Fatalf("dial %s: %v", q, err)
			}
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { _ = c.CloseNow() })
		return c, resp.StatusCode
	}
	if _, code := dial("role=screen"); code != 401 {
		t.Errorf("screen without token: %d", code)
	}
	if _, code := dial("role=host&token=" + screen); code != 403 {
		t.Errorf("host with a subscribe token: %d", code)
	}
	c, code := dial("role=screen&token=" + screen)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("screen with token: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hello map[string]any
	_ = json.Unmarshal(b, &hello)
	if hello["type"] != "hello" || hello["stream"] != "show-party" || len(hello["iceServers"].([]any)) == 0 {
		t.Fatalf("hello: %v", hello)
	}
	if code, m := postJSON(t, base, host, `{"flash":"#ff0000"}`); code != 200 || m["delivered"] != 1.0 {
		t.Errorf("broadcast to one screen: %d %v", code, m)
	}
	resp, err := http.Get(srv.OpsURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"parley_shows 1", "parley_show_screens 1", "parley_show_hosts 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The pages are served.
	for _, p := range []string{"/show/party", "/show/party/screen"} {
		resp, err := http.Get(srv.URL() + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

func TestShowPagesRouting(t *testing.T) {
	srv := startServer(t, nil)
	screenPage := map[string]bool{"/show/party/screen": true, "/show/screen/screen": true}
	for p, want := range map[string]int{"/show/party": 200, "/show/party/screen": 200, "/show/screen": 200,
		"/show/screen/screen": 200, "/show/": 404, "/show/party/other": 404, "/show/party/screen/x": 404} {
		resp, err := http.Get(srv.URL() + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", p, resp.StatusCode, want)
		}
		if want == 200 && screenPage[p] != strings.Contains(string(body), "show-screen.js") {
			t.Errorf("%s: wrong page", p)
		}
	}
}
