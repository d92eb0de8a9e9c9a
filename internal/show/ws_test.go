package show

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

type testEnv struct {
	t   *testing.T
	reg *Registry
	srv *httptest.Server
}

func newTestEnv(t *testing.T, o Options) *testEnv {
	t.Helper()
	if o.HostInterval == 0 {
		o.HostInterval = 20 * time.Millisecond
	}
	reg := NewRegistry(o)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/shows/{name}/ws", reg.ServeWS)
	mux.HandleFunc("POST /api/shows/{name}/broadcast", reg.ServeBroadcast)
	mux.HandleFunc("GET /api/shows/{name}", reg.ServeState)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := reg.Close(ctx); err != nil {
			t.Errorf("registry close: %v", err)
		}
		srv.Close()
	})
	return &testEnv{t: t, reg: reg, srv: srv}
}

// client is a test control connection that keeps every message it got.
type client struct {
	t    *testing.T
	ws   *websocket.Conn
	msgs chan map[string]any
	done chan error
}

func (e *testEnv) dial(show, query string) *client {
	e.t.Helper()
	c, err := e.tryDial(show, query)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *testEnv) tryDial(show, query string) (*client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/api/shows/" + show + "/ws?" + query
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (status %d)", query, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", query, err)
	}
	c := &client{t: e.t, ws: ws, msgs: make(chan map[string]any, 1000), done: make(chan error, 1)}
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				c.done <- err
				close(c.msgs)
				return
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				c.done <- err
				close(c.msgs)
				return
			}
			c.msgs <- m
		}
	}()
	e.t.Cleanup(func() { _ = ws.CloseNow() })
	return c, nil
}

func (c *client) write(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// expect waits for a message satisfying ok, skipping others.
func (c *client) expect(what string, ok func(map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m, open := <-c.msgs:
			if !open {
				c.t.Fatalf("connection ended waiting for %s", what)
			}
			if ok(m) {
				return m
			}
		case <-deadline:
			c.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func isType(typ string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["type"] == typ }
}

func band(m map[string]any) Band {
	b := m["band"].([]any)
	return Band{b[0].(float64), b[1].(float64)}
}

// screensWhere waits for a host's screens message satisfying ok.
func (c *client) screensWhere(what string, ok func([]ScreenInfo) bool) []ScreenInfo {
	c.t.Helper()
	var got []ScreenInfo
	c.expect(what, func(m map[string]any) bool {
		if m["type"] != TypeScreens {
			return false
		}
		b, _ := json.Marshal(m["screens"])
		got = nil
		_ = json.Unmarshal(b, &got)
		return ok(got)
	})
	return got
}

func TestWSFlowHostAndTwoScreens(t *testing.T) {
	e := newTestEnv(t, Options{Grace: -1, ICEServers: func(*http.Request) []ICEServer {
		return []ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}}
	}})
	host := e.dial("party", "role=host")
	h := host.expect("host hello", isType(TypeHello))
	if h["stream"] != "show-party" || h["role"] != "host" || len(h["iceServers"].([]any)) != 1 {
		t.Fatalf("host hello: %v", h)
	}

	a := e.dial("party", "role=screen&label=R1C1")
	ha := a.expect("screen hello", isType(TypeHello))
	if ha["id"] != "s1" || ha["key"] == "" {
		t.Fatalf("screen hello: %v", ha)
	}
	a.expect("mode", func(m map[string]any) bool { return m["type"] == TypeMode && m["palette"] == "redblue" })
	if got := band(a.expect("a's first band", isType(TypeAssign))); got != (Band{MinFreq, MaxFreq}) {
		t.Fatalf("a alone: band %v", got)
	}
	b := e.dial("party", "role=screen")
	if got := band(b.expect("b's band", isType(TypeAssign))); got != (Band{800, MaxFreq}) {
		t.Fatalf("b: band %v", got)
	}
	m := a.expect("a's new band", isType(TypeAssign))
	if got := band(m); got != (Band{MinFreq, 800}) || m["label"] != "R1C1" || m["index"] != 0.0 || m["count"] != 2.0 {
		t.Fatalf("a after b joined: %v", m)
	}

	// Levels reach the host, labelled.
	b.write(`{"type":"level","value":200}`)
	host.screensWhere("b's level", func(ss []ScreenInfo) bool {
		return len(ss) == 2 && ss[0].Label == "R1C1" && ss[1].Label == "Screen 2" && ss[1].Level == 200 && ss[1].Online
	})

	// The host swaps the order: the bands swap.
	host.write(`{"type":"layout","order":["s2","s1"]}`)
	if got := band(b.expect("b moved first", isType(TypeAssign))); got != (Band{MinFreq, 800}) {
		t.Fatalf("b after swap: %v", got)
	}
	if got := band(a.expect("a moved last", isType(TypeAssign))); got != (Band{800, MaxFreq}) {
		t.Fatalf("a after swap: %v", got)
	}
	// A hand-set band, then back to automatic.
	host.write(`{"type":"assign","screen":"s1","band":[950,1050],"label":"Centre"}`)
	m = a.expect("a's manual band", isType(TypeAssign))
	if band(m) != (Band{950, 1050}) || m["label"] != "Centre" {
		t.Fatalf("manual assign: %v", m)
	}
	if got := band(b.expect("b gets the rest", func(m map[string]any) bool { return m["type"] == TypeAssign && band(m)[1] == MaxFreq })); got != (Band{MinFreq, MaxFreq}) {
		t.Fatalf("b with a manual: %v", got)
	}
	host.write(`{"type":"layout","auto":true}`)
	if got := band(a.expect("a auto again", isType(TypeAssign))); got != (Band{MinFreq, 800}) {
		t.Fatalf("a after auto: %v", got)
	}

	// Mode, flash and text reach both screens.
	host.write(`{"type":"mode","palette":"hue"}`)
	host.write(`{"type":"flash","color":"#00ff00","ms":250}`)
	host.write(`{"type":"text","text":"Encore!"}`)
	for _, c := range []*client{a, b} {
		c.expect("mode hue", func(m map[string]any) bool { return m["type"] == TypeMode && m["palette"] == "hue" })
		c.expect("flash", func(m map[string]any) bool {
			return m["type"] == TypeFlash && m["color"] == "#00ff00" && m["ms"] == 250.0
		})
		c.expect("text", func(m map[string]any) bool { return m["type"] == TypeText && m["text"] == "Encore!" })
	}

	// Bad messages get an error and the connection lives on.
	host.write(`{"type":"mode","palette":"disco"}`)
	host.expect("error for a bad palette", func(m map[string]any) bool { return m["type"] == TypeError && m["code"] == CodeBadMessage })
	host.write(`{"type":"assign","screen":"s9","band":[1,2]}`)
	host.expect("error for an unknown screen", func(m map[string]any) bool { return m["type"] == TypeError && m["code"] == CodeUnknown })
	a.write(`{"type":"flash"}`)
	a.expect("error: screens may not flash", func(m map[string]any) bool { return m["type"] == TypeError && m["code"] == CodeBadMessage })
	a.write(`{"type":"text","text":"` + strings.Repeat("x", MaxMessage) + `"}`)
	a.expect("error: too large", func(m map[string]any) bool { return m["type"] == TypeError && m["code"] == CodeTooLarge })
	a.write(`{"type":"level","value":7}`)
	host.screensWhere("a still reports", func(ss []ScreenInfo) bool { return len(ss) == 2 && ss[0].Level == 7 })

	// A screen leaves: the other gets the whole spectrum.
	_ = b.ws.Close(websocket.StatusNormalClosure, "")
	if got := band(a.expect("a alone again", isType(TypeAssign))); got != (Band{MinFreq, MaxFreq}) {
		t.Fatalf("a after b left: %v", got)
	}
	host.screensWhere("one screen", func(ss []ScreenInfo) bool { return len(ss) == 1 })

	// The state endpoint agrees.
	resp, err := http.Get(e.srv.URL + "/api/shows/party")
	if err != nil {
		t.Fatal(err)
	}
	var st State
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Name != "party" || len(st.Screens) != 1 || st.Mode.Palette != "hue" || st.Text != "Encore!" || st.Hosts != 1 {
		t.Fatalf("state: %+v", st)
	}
}

func TestWSScreenResumesWithKey(t *testing.T) {
	e := newTestEnv(t, Options{Grace: 2 * time.Second})
	host := e.dial("wall", "role=host")
	a := e.dial("wall", "role=screen&key=keyA")
	a.expect("a assigned", isType(TypeAssign))
	b := e.dial("wall", "role=screen&key=keyB")
	b.expect("b assigned", isType(TypeAssign))
	_ = a.ws.Close(websocket.StatusNormalClosure, "")
	host.screensWhere("a offline, still first", func(ss []ScreenInfo) bool {
		return len(ss) == 2 && ss[0].ID == "s1" && !ss[0].Online && ss[1].Online
	})
	a2 := e.dial("wall", "role=screen&key=keyA")
	if h := a2.expect("hello", isType(TypeHello)); h["id"] != "s1" {
		t.Fatalf("resumed as %v", h["id"])
	}
	if got := band(a2.expect("same band", isType(TypeAssign))); got != (Band{MinFreq, 800}) {
		t.Fatalf("resumed band %v", got)
	}
	// The same key again replaces the connection (4001) and keeps the place.
	a3 := e.dial("wall", "role=screen&key=keyA")
	a3.expect("hello", isType(TypeHello))
	if err := <-a2.done; websocket.CloseStatus(err) != statusReplaced {
		t.Fatalf("old connection ended with %v, want 4001", err)
	}
	// Grace expiry removes an offline screen.
	_ = b.ws.Close(websocket.StatusNormalClosure, "")
	host.screensWhere("b gone after the grace period", func(ss []ScreenInfo) bool { return len(ss) == 1 && ss[0].ID == "s1" })
	// Everyone leaves: the show closes.
	_ = a3.ws.Close(websocket.StatusNormalClosure, "")
	_ = host.ws.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(5 * time.Second)
	for len(e.reg.Names()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("shows still open: %v", e.reg.Names())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWSLevelRateLimit(t *testing.T) {
	e := newTestEnv(t, Options{Grace: -1})
	host := e.dial("rl", "role=host")
	a := e.dial("rl", "role=screen")
	a.expect("assigned", isType(TypeAssign))
	for i := 1; i <= 100; i++ {
		a.write(fmt.Sprintf(`{"type":"level","value":%d}`, i))
	}
	time.Sleep(300 * time.Millisecond)
	ss := host.screensWhere("some level", func(ss []ScreenInfo) bool { return len(ss) == 1 && ss[0].Level > 0 })
	if ss[0].Level > 20 {
		t.Fatalf("level %d: the burst should have been cut at about 10", ss[0].Level)
	}
}

func TestWSRejects(t *testing.T) {
	e := newTestEnv(t, Options{MaxScreens: 1, Grace: -1})
	for _, q := range []string{"role=dj", "role=screen&key=bad%20key", "role=screen&label=" + strings.Repeat("x", 41)} {
		if _, err := e.tryDial("x", q); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("%s: %v, want 400", q, err)
		}
	}
	if _, err := e.tryDial("bad%20name", "role=host"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("bad name: %v, want 404", err)
	}
	e.dial("full", "role=screen").expect("assigned", isType(TypeAssign))
	c := e.dial("full", "role=screen")
	if err := <-c.done; websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
		t.Fatalf("second screen: %v, want close 1013", err)
	}
}

func TestRegistryCloseEndsConnections(t *testing.T) {
	reg := NewRegistry(Options{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/shows/{name}/ws", reg.ServeWS)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	e := &testEnv{t: t, reg: reg, srv: srv}
	host := e.dial("s", "role=host")
	host.expect("hello", isType(TypeHello))
	scr := e.dial("s", "role=screen")
	scr.expect("assigned", isType(TypeAssign))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{host, scr} {
		if err := <-c.done; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("closed with %v, want 1001", err)
		}
	}
	if _, err := e.tryDial("s", "role=host"); err == nil {
		t.Fatal("dial after close succeeded")
	}
}

func TestBroadcastEndpoint(t *testing.T) {
	e := newTestEnv(t, Options{Grace: -1, Verify: func(r *http.Request, show string, role Role) error {
		if role == RoleScreen || role == RoleHost {
			return nil
		}
		switch r.Header.Get("Authorization") {
		case "Bearer good":
			return nil
		case "Bearer viewer":
			return fmt.Errorf("%w: needs publish", ErrForbidden)
		}
		return errors.New("a token is required")
	}})
	post := func(show, token, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/shows/"+show+"/broadcast", strings.NewReader(body))
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
	a := e.dial("gig", "role=screen")
	b := e.dial("gig", "role=screen")
	a.expect("a assigned", isType(TypeAssign))
	b.expect("b assigned", isType(TypeAssign))

	code, m := post("gig", "good", `{"flash":"#ff0000","ms":500}`)
	if code != 200 || m["delivered"] != 2.0 || m["screens"] != 2.0 {
		t.Fatalf("broadcast: %d %v", code, m)
	}
	for _, c := range []*client{a, b} {
		c.expect("flash", func(m map[string]any) bool {
			return m["type"] == TypeFlash && m["color"] == "#ff0000" && m["ms"] == 500.0
		})
	}
	code, _ = post("gig", "good", `{"mode":"beat","text":"Hello"}`)
	if code != 200 {
		t.Fatalf("mode+text: %d", code)
	}
	a.expect("mode", func(m map[string]any) bool { return m["type"] == TypeMode && m["palette"] == "beat" })
	a.expect("text", func(m map[string]any) bool { return m["type"] == TypeText && m["text"] == "Hello" })

	for _, body := range []string{`{"mode":"disco"}`, `not json`, `{}`, `{"flash":"#ff0000","extra":1}`, `{"flash":"#fff","ms":99999}`} {
		code, m := post("gig", "good", body)
		errObj, _ := m["error"].(map[string]any)
		if code != 400 || errObj["code"] != CodeBadBody || errObj["message"] == "" {
			t.Errorf("%s: %d %v, want 400 bad-body", body, code, m)
		}
	}
	if code, m := post("gig", "good", `{"text":"`+strings.Repeat("a", MaxMessage)+`"}`); code != 413 {
		t.Errorf("huge body: %d %v", code, m)
	}
	if code, m := post("gig", "", `{"mode":"hue"}`); code != 401 || m["error"].(map[string]any)["code"] != "unauthorized" {
		t.Errorf("no token: %d %v", code, m)
	}
	if code, m := post("gig", "viewer", `{"mode":"hue"}`); code != 403 || m["error"].(map[string]any)["code"] != "insufficient_scope" {
		t.Errorf("viewer token: %d %v, want 403 insufficient_scope", code, m)
	}
	if code, m := post("nobody-here", "good", `{"mode":"hue"}`); code != 200 || m["delivered"] != 0.0 {
		t.Errorf("unknown show: %d %v", code, m)
	}
	if code, _ := post("bad%20name", "good", `{"mode":"hue"}`); code != 404 {
		t.Errorf("bad name: %d", code)
	}
	// Not JSON by content type (what a cross-site form could send): 415.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/shows/gig/broadcast", strings.NewReader(`{"mode":"hue"}`))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer good")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: %d, want 415", resp.StatusCode)
	}
	if shows, screens, hosts := e.reg.Counts(); shows != 1 || screens != 2 || hosts != 0 {
		t.Errorf("Counts() = %d, %d, %d", shows, screens, hosts)
	}
}

// Hundreds of screens: each gets its own band, adjacent and in join
// order, and a broadcast reaches all of them.
func TestWSManyScreens(t *testing.T) {
	const n = 300
	e := newTestEnv(t, Options{Grace: -1})
	screens := make([]*client, n)
	start := time.Now()
	for i := range screens {
		screens[i] = e.dial("stadium", "role=screen")
		screens[i].expect("hello", isType(TypeHello)) // joined: the next one joins after it
	}
	t.Logf("%d screens joined in %v", n, time.Since(start).Round(time.Millisecond))
	for i, c := range screens {
		var b Band
		c.expect(fmt.Sprintf("screen %d's final band", i), func(m map[string]any) bool {
			if m["type"] != TypeAssign || m["count"] != float64(n) {
				return false
			}
			b = band(m)
			return true
		})
		want := Bands(n, MinFreq, MaxFreq)[i]
		if b != want {
			t.Fatalf("screen %d: band %v, want %v", i, b, want)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/shows/stadium/broadcast", strings.NewReader(`{"flash":"#00ff00"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res BroadcastResult
	_ = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if res.Delivered != n || res.Screens != n {
		t.Fatalf("broadcast: %+v", res)
	}
	for i, c := range screens {
		c.expect(fmt.Sprintf("screen %d's flash", i), isType(TypeFlash))
	}
}

// TestWSAirTellsScreens: a screen's hello says whether the show's audio
// is published; {"type":"air"} tells it when that changes, once per change.
func TestWSAirTellsScreens(t *testing.T) {
	var live atomic.Bool
	e := newTestEnv(t, Options{AudioLive: func(show string) bool { return show == "air" && live.Load() }})
	a := e.dial("air", "role=screen")
	if h := a.expect("hello", isType(TypeHello)); h["audio_live"] != false {
		t.Fatalf("hello before the audio: audio_live %v", h["audio_live"])
	}
	live.Store(true)
	e.reg.AudioChanged("air")
	e.reg.AudioChanged("air") // no change since: nothing more sent
	if m := a.expect("air", isType(TypeAir)); m["live"] != true {
		t.Fatalf("air %v", m)
	}
	b := e.dial("air", "role=screen")
	if h := b.expect("hello", isType(TypeHello)); h["audio_live"] != true {
		t.Fatalf("hello while on air: audio_live %v", h["audio_live"])
	}
	live.Store(false)
	e.reg.AudioChanged("air")
	for _, c := range []*client{a, b} {
		if m := c.expect("air off", isType(TypeAir)); m["live"] != false {
			t.Fatalf("air %v, want off (a second air true was sent)", m)
		}
	}
	if h := e.dial("air", "role=host").expect("host hello", isType(TypeHello)); h["audio_live"] != nil {
		t.Errorf("a host's hello has audio_live %v", h["audio_live"])
	}
}
