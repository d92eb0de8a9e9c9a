package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/server"
)

// testSecret is long enough for any auth policy (32 bytes or more).
const testSecret = "edge-test-secret-0123456789abcdef-xyz"

func mintToken(t *testing.T, room string, g auth.Grants) string {
	t.Helper()
	tok, err := auth.NewToken([]byte(testSecret), room, "x", g, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do sends a request with headers given as name, value pairs ("Host"
// sets the Host header) and returns the status, headers and body.
func do(t *testing.T, method, url, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func errorCode(body string) string {
	var b struct{ Error struct{ Code string } }
	_ = json.Unmarshal([]byte(body), &b)
	return b.Error.Code
}

// openPollSession opens a long-poll signaling session and returns its ID.
func openPollSession(t *testing.T, srv *server.Server) string {
	t.Helper()
	code, _, body := do(t, http.MethodPost, srv.URL()+"/api/session", "")
	var s struct{ ID string }
	if err := json.Unmarshal([]byte(body), &s); code != http.StatusCreated || err != nil || s.ID == "" {
		t.Fatalf("open session: %d %s", code, body)
	}
	return s.ID
}

// TestRow07SlowBodies is row 7 of issue #10: a body sent at 1 byte/s to
// /whip/x, /api/session/{id} and /api/shows/x/broadcast was held for 46 s
// and more. Now each is cut off after --body-timeout with 408, while the
// server keeps answering others.
func TestRow07SlowBodies(t *testing.T) {
	const timeout = 700 * time.Millisecond
	srv := startServer(t, func(c *config.Config) { c.BodyTimeout = config.Duration(timeout) })
	session := openPollSession(t, srv)
	host := strings.TrimPrefix(srv.URL(), "http://")
	for _, ep := range []struct{ path, ctype string }{
		{"/whip/x", "application/sdp"},
		{"/api/session/" + session, "application/json"},
		{"/api/shows/x/broadcast", "application/json"},
	} {
		t.Run(ep.path, func(t *testing.T) {
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\n\r\n", ep.path, host, ep.ctype)
			// The trickle: one byte a second until the server answers.
			answered := make(chan struct{})
			trickled := make(chan struct{})
			go func() {
				defer close(trickled)
				tk := time.NewTicker(time.Second)
				defer tk.Stop()
				for {
					if _, err := conn.Write([]byte{'{'}); err != nil {
						return
					}
					select {
					case <-answered:
						return
					case <-tk.C:
					}
				}
			}()
			defer func() { close(answered); <-trickled }()

			// Others are served meanwhile.
			if code, _, _ := do(t, http.MethodGet, srv.URL()+"/healthz", ""); code != http.StatusOK {
				t.Fatalf("healthz while a body trickles: %d", code)
			}
			start := time.Now()
			_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second)) // the test's guard, not the server's
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer to a slow body (the server held it): %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != http.StatusRequestTimeout || errorCode(string(body)) != "request_timeout" {
				t.Fatalf("slow body: %d %s, want 408 request_timeout", resp.StatusCode, body)
			}
			if !resp.Close {
				t.Error("the connection is kept open after a body timed out")
			}
			if took > timeout+5*time.Second {
				t.Errorf("cut off after %v with a %v body timeout", took, timeout)
			}
		})
	}
	// A body that arrives in time is served as before (the deadline is
	// lifted once it is read).
	if code, _, body := do(t, http.MethodPost, srv.URL()+"/api/shows/x/broadcast", `{"mode":"hue"}`, "Content-Type", "application/json"); code != http.StatusOK {
		t.Fatalf("broadcast: %d %s", code, body)
	}
}

// TestRow11OriginRebinding is row 11 of issue #10: a page of
// evil.example, which resolves to this server (DNS rebinding), sends
// Origin and Host evil.example; same-origin judged from Host let it in,
// and WHIP/WHEP answered CORS with "*". Now the origin is judged against
// the server's own names and --allow-origins, everywhere.
func TestRow11OriginRebinding(t *testing.T) {
	srv := startServer(t, nil)
	evil := []string{"Origin", "http://evil.example", "Host", "evil.example"}
	ws := append([]string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, evil...)
	for _, tc := range []struct {
		method, path, ctype string
		hdr                 []string
	}{
		{http.MethodGet, "/ws", "", ws},
		{http.MethodGet, "/api/shows/party/ws?role=screen", "", ws},
		{http.MethodPost, "/api/session", "", evil},
		{http.MethodOptions, "/api/session", "", evil},
		{http.MethodPost, "/whip/x", "application/sdp", evil},
		{http.MethodOptions, "/whip/x", "", evil},
		{http.MethodPost, "/whep/x", "application/sdp", evil},
	} {
		hdr := tc.hdr
		if tc.ctype != "" {
			hdr = append([]string{"Content-Type", tc.ctype}, hdr...)
		}
		code, h, body := do(t, tc.method, srv.URL()+tc.path, "v=0\r\n", hdr...)
		if code != http.StatusForbidden || h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s %s from evil.example: %d (Access-Control-Allow-Origin %q) %s", tc.method, tc.path, code, h.Get("Access-Control-Allow-Origin"), body)
		}
	}

	// The server's own pages and --allow-origins sites are answered with
	// their origin, never "*".
	own := srv.URL()
	srv2 := startServer(t, func(c *config.Config) { c.AllowOrigins = []string{"https://app.example"} })
	for _, tc := range []struct{ url, origin string }{
		{own + "/whip/x", own},
		{srv2.URL() + "/whep/x", "https://app.example"},
	} {
		code, h, _ := do(t, http.MethodOptions, tc.url, "", "Origin", tc.origin)
		if code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != tc.origin {
			t.Errorf("preflight from %s: %d, Access-Control-Allow-Origin %q", tc.origin, code, h.Get("Access-Control-Allow-Origin"))
		}
	}
}

// TestRow13OpsBehindDoor is row 13 of issue #10: /metrics and
// /api/streams/<room> answered anyone on a server with --auth-secret. Now
// they are served on the ops listener; on the main port /metrics needs an
// admin token (and is not served at all without auth), the stream status a
// token for that stream.
func TestRow13OpsBehindDoor(t *testing.T) {
	t.Run("open server", func(t *testing.T) {
		srv := startServer(t, nil)
		if srv.OpsURL() == "" {
			t.Fatal("no ops listener")
		}
		if code, _, _ := do(t, http.MethodGet, srv.URL()+"/metrics", ""); code != http.StatusNotFound {
			t.Errorf("main port /metrics without auth: %d, want 404", code)
		}
		if code, _, body := do(t, http.MethodGet, srv.OpsURL()+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "parley_rooms ") {
			t.Errorf("ops /metrics: %d", code)
		}
		for _, base := range []string{srv.URL(), srv.OpsURL()} {
			if code, _, body := do(t, http.MethodGet, base+"/api/streams/x", ""); code != http.StatusOK || !strings.Contains(body, `"live":false`) {
				t.Errorf("%s/api/streams/x: %d %s", base, code, body)
			}
		}
	})

	t.Run("auth", func(t *testing.T) {
		srv := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret })
		admin := mintToken(t, "*", auth.Grants{Admin: true})
		viewer := mintToken(t, "priv", auth.Grants{Subscribe: true})
		other := mintToken(t, "other", auth.Grants{Subscribe: true, Publish: true})
		bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
		for _, tc := range []struct {
			name, url string
			hdr       []string
			want      int
		}{
			{"metrics, no token", srv.URL() + "/metrics", nil, http.StatusUnauthorized},
			{"metrics, viewer", srv.URL() + "/metrics", bearer(viewer), http.StatusForbidden},
			{"metrics, admin", srv.URL() + "/metrics", bearer(admin), http.StatusOK},
			{"metrics, ops", srv.OpsURL() + "/metrics", nil, http.StatusOK},
			{"stream, no token", srv.URL() + "/api/streams/priv", nil, http.StatusUnauthorized},
			{"stream, other room", srv.URL() + "/api/streams/priv", bearer(other), http.StatusForbidden},
			{"stream, viewer", srv.URL() + "/api/streams/priv", bearer(viewer), http.StatusOK},
			{"stream, ?token=", srv.URL() + "/api/streams/priv?token=" + viewer, nil, http.StatusOK},
			{"stream, ops", srv.OpsURL() + "/api/streams/priv", nil, http.StatusOK},
		} {
			code, h, body := do(t, http.MethodGet, tc.url, "", tc.hdr...)
			if code != tc.want {
				t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
			}
			if code == http.StatusForbidden && !strings.Contains(h.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
				t.Errorf("%s: WWW-Authenticate %q", tc.name, h.Get("WWW-Authenticate"))
			}
		}
	})

	t.Run("ops off", func(t *testing.T) {
		srv := startServer(t, func(c *config.Config) { c.Ops = "off" })
		if srv.OpsURL() != "" {
			t.Fatalf("OpsURL %q with --ops off", srv.OpsURL())
		}
	})
}

// WHIP, WHEP and the shows tell a missing or invalid token (401,
// invalid_token) from a valid token lacking the grant (403,
// insufficient_scope), as RFC 6750 asks.
func TestTokenScopeErrors(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret })
	viewer := mintToken(t, "cam", auth.Grants{Subscribe: true})
	screen := mintToken(t, "show-party", auth.Grants{Subscribe: true})
	for _, tc := range []struct {
		path, ctype, token string
		want               int
		challenge, code    string
	}{
		{"/whip/cam", "application/sdp", "", 401, `Bearer realm="parley"`, "unauthorized"},
		{"/whip/cam", "application/sdp", "garbage", 401, `error="invalid_token"`, "unauthorized"},
		{"/whip/cam", "application/sdp", viewer, 403, `error="insufficient_scope"`, "insufficient_scope"},
		{"/whep/other", "application/sdp", viewer, 403, `error="insufficient_scope"`, "insufficient_scope"},
		{"/api/shows/party/broadcast", "application/json", "garbage", 401, `error="invalid_token"`, "unauthorized"},
		{"/api/shows/party/broadcast", "application/json", screen, 403, `error="insufficient_scope"`, "insufficient_scope"},
	} {
		hdr := []string{"Content-Type", tc.ctype}
		if tc.token != "" {
			hdr = append(hdr, "Authorization", "Bearer "+tc.token)
		}
		code, h, body := do(t, http.MethodPost, srv.URL()+tc.path, "{}", hdr...)
		if code != tc.want || !strings.Contains(h.Get("WWW-Authenticate"), tc.challenge) || errorCode(body) != tc.code {
			t.Errorf("%s with token %.8q: %d %q %s, want %d %s %s", tc.path, tc.token, code, h.Get("WWW-Authenticate"), body, tc.want, tc.challenge, tc.code)
		}
	}
}

// deadWHIPOffer is a WHIP offer whose candidates nobody answers (its peer
// connection is closed): a session made from it never connects.
func deadWHIPOffer(t *testing.T) string { return deadOffer(t, true) }

// deadWHEPOffer is a WHEP viewer's offer (receive video and audio) whose
// candidates nobody answers.
func deadWHEPOffer(t *testing.T) string { return deadOffer(t, false) }

func deadOffer(t *testing.T, publish bool) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if publish {
		_, err = pc.AddTransceiverFromTrack(vp8(t), webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	} else {
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if _, err = pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				break
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	return pc.LocalDescription().SDP
}

// Row 8 through the server (the whole row is TestRow08PendingWHIP in
// internal/whip): the pending limit counts the client named by a trusted
// proxy, and pending publishers do not hold the stream name.
func TestPendingWHIPPerClient(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.TrustedProxies = []string{"127.0.0.1/32"}
		c.PendingPerIP = 2
	})
	offer := deadWHIPOffer(t)
	post := func(client string) int {
		code, _, _ := do(t, http.MethodPost, srv.URL()+"/whip/cam", offer, "Content-Type", "application/sdp", "X-Forwarded-For", client)
		return code
	}
	for i, want := range []int{http.StatusCreated, http.StatusCreated, http.StatusTooManyRequests} {
		if got := post("203.0.113.5"); got != want {
			t.Fatalf("POST %d from 203.0.113.5: %d, want %d", i+1, got, want)
		}
	}
	if got := post("203.0.113.6"); got != http.StatusCreated {
		t.Fatalf("another client: %d, want 201 (neither its limit nor the stream name is taken)", got)
	}
	m := get(t, srv.OpsURL()+"/metrics")
	for _, want := range []string{"parley_whip_pending_sessions 3", "parley_whip_pending_refused_total 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
