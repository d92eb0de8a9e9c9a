package server_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/pkg/client"
)

// TestCheckAPI: GET /api/check hands out STUN and TURN (UDP and TCP) with
// a TURN credential and the media ports, refuses foreign pages, and holds
// each address to 30 requests a minute.
func TestCheckAPI(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.MediaTCP = freeTCPAddr(t) })
	var got struct {
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"iceServers"`
		Media struct{ UDP, TCP int } `json:"media"`
	}
	if err := json.Unmarshal([]byte(get(t, srv.URL()+"/api/check")), &got); err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, s := range got.ICEServers {
		all += strings.Join(s.URLs, " ") + " "
		if strings.HasPrefix(s.URLs[0], "turn:") && (s.Username == "" || s.Credential == "" || !strings.Contains(s.Username, "check-")) {
			t.Errorf("turn credential %+v", s)
		}
	}
	for _, want := range []string{"stun:127.0.0.1:", "?transport=udp", "?transport=tcp"} {
		if !strings.Contains(all, want) {
			t.Errorf("ice servers %q lack %q", all, want)
		}
	}
	if got.Media.UDP == 0 || got.Media.TCP == 0 {
		t.Errorf("media %+v", got.Media)
	}

	req, _ := http.NewRequest("GET", srv.URL()+"/api/check", nil)
	req.Header.Set("Origin", "https://elsewhere.example")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v", resp, err)
	}

	codes := map[int]int{}
	for range 40 {
		resp, err := http.Get(srv.URL() + "/api/check")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	// 30 a minute: one was used above (the foreign page was refused
	// before the rate counted it).
	if codes[http.StatusOK] != 29 || codes[http.StatusTooManyRequests] != 11 {
		t.Errorf("status codes %v, want 29 OK then 429s", codes)
	}
}

// TestCheckProbe: POST /api/check/media answers a data-channel offer with
// candidates of the asked transport only, and over UDP the channel opens
// and echoes; with ICE-TCP off the TCP probe is 404.
func TestCheckProbe(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.MediaTCP = freeTCPAddr(t) })
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	offer := func(pc *webrtc.PeerConnection) string {
		o, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		g := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(o); err != nil {
			t.Fatal(err)
		}
		<-g
		return pc.LocalDescription().SDP
	}
	post := func(transport, sdp string) (int, string) { return postProbe(t, srv.URL(), transport, sdp) }
	candidates := func(sdp string) (udp, tcp int) {
		for _, l := range strings.Split(sdp, "\n") {
			if f := strings.Fields(l); strings.HasPrefix(l, "a=candidate:") && len(f) > 2 {
				switch strings.ToLower(f[2]) {
				case "udp":
					udp++
				case "tcp":
					tcp++
				}
			}
		}
		return udp, tcp
	}

	pcT, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer pcT.Close()
	_, _ = pcT.CreateDataChannel("check", nil)
	code, ans := post("tcp", offer(pcT))
	if u, tc := candidates(ans); code != http.StatusCreated || u != 0 || tc == 0 {
		t.Fatalf("tcp probe: %d, %d udp and %d tcp candidates", code, u, tc)
	}

	pc, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer pc.Close()
	dc, _ := pc.CreateDataChannel("check", nil)
	echo := make(chan string, 1)
	dc.OnOpen(func() { _ = dc.SendText("ok") })
	dc.OnMessage(func(m webrtc.DataChannelMessage) { echo <- string(m.Data) })
	code, ans = post("udp", offer(pc))
	if u, tc := candidates(ans); code != http.StatusCreated || u == 0 || tc != 0 {
		t.Fatalf("udp probe: %d, %d udp and %d tcp candidates", code, u, tc)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-echo:
		if m != "ok" {
			t.Errorf("echo %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the probe's data channel did not echo")
	}

	if code, _ := post("sctp", "x"); code != http.StatusBadRequest {
		t.Errorf("bad transport: %d", code)
	}
	noTCP := startServer(t, nil)
	if code, _ := postProbe(t, noTCP.URL(), "tcp", "v=0"); code != http.StatusNotFound {
		t.Errorf("ICE-TCP off: %d, want 404", code)
	}
}

// postProbe posts an offer to base's /api/check/media.
func postProbe(t *testing.T, base, transport, sdp string, token ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/check/media?transport="+transport, strings.NewReader(sdp))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	if len(token) > 0 {
		req.Header.Set("Authorization", "Bearer "+token[0])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCheckAPIAuth: with auth on, a TURN credential and a media probe
// only for a valid token; without one, STUN only and turnNeedsToken, and
// the probe is refused with 401 before any offer is read.
func TestCheckAPIAuth(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.AuthSecret = testSecret })
	anon := get(t, srv.URL()+"/api/check")
	if strings.Contains(anon, "turn:") || strings.Contains(anon, "credential") || !strings.Contains(anon, `"turnNeedsToken":true`) || !strings.Contains(anon, "stun:") {
		t.Errorf("no token: %s", anon)
	}
	tok := mintToken(t, "room", auth.Grants{})
	signed := get(t, srv.URL()+"/api/check?token="+tok)
	if !strings.Contains(signed, "turn:") || !strings.Contains(signed, "credential") || strings.Contains(signed, "turnNeedsToken") {
		t.Errorf("with a token: %s", signed)
	}
	if code, body := postProbe(t, srv.URL(), "udp", "v=0"); code != http.StatusUnauthorized || !strings.Contains(body, `"unauthorized"`) {
		t.Errorf("probe without a token: %d %s", code, body)
	}
	// With a token the probe gets as far as the offer, which is bad here.
	if code, body := postProbe(t, srv.URL(), "udp", "v=0", tok); code != http.StatusBadRequest || !strings.Contains(body, "bad_offer") {
		t.Errorf("probe with a token: %d %s", code, body)
	}
}

// freeTCPAddr is a loopback TCP address free a moment ago, for ICE-TCP:
// "127.0.0.1:0" would ask for the UDP port's number, which another
// process on a busy machine may hold for TCP.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
