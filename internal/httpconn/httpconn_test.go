package httpconn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testServer is net/http on a Listener, with /fast/ taken over by a Loop
// (as the server does /hls/) and everything else answered by net/http.
type testServer struct {
	addr string
	loop *Loop
	srv  *http.Server
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	back := NewListener(ln)
	if cfg.Handler == nil {
		cfg.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body := "fast " + r.URL.Path + " " + r.URL.Query().Get("q") + " " + r.Header.Get("X-Test")
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = io.WriteString(w, body)
		})
	}
	cfg.Takes = func(p string) bool { return strings.HasPrefix(p, "/fast/") }
	ts := &testServer{addr: ln.Addr().String(), loop: New(cfg, back)}
	ts.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fast/") {
			if Eligible(r) && ts.loop.Take(w, r) {
				return
			}
			cfg.Handler.ServeHTTP(w, r)
			return
		}
		_, _ = io.WriteString(w, "other "+r.Method+" "+r.URL.Path)
	}), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { // ends with Close below
		defer close(done)
		_ = ts.srv.Serve(back)
	}()
	t.Cleanup(func() {
		_ = ts.srv.Close()
		ts.loop.Close()
		<-done
	})
	return ts
}

// rawConn is a client that writes bytes and reads answers one by one.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (ts *testServer) dial(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one answer to a request of method.
func (rc *rawConn) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.r, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading an answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading a body: %v", err)
	}
	return resp, string(b)
}

func get(path string, headers ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + strings.Join(headers, "") + "\r\n"
}

func TestKeepAliveAndPipelining(t *testing.T) {
	ts := newTestServer(t, Config{})
	c := ts.dial(t)
	c.send(get("/fast/a?q=1", "X-Test: one\r\n"))
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "fast /fast/a 1 one" || resp.Header.Get("Date") == "" {
		t.Fatalf("first: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	c.send(get("/fast/b?q=2") + get("/fast/c?q=3", "x-test: three\r\n")) // pipelined, in one write
	for _, want := range []string{"fast /fast/b 2 ", "fast /fast/c 3 three"} {
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != want || resp.ContentLength != int64(len(want)) {
			t.Fatalf("got %d %q (length %d), want %q", resp.StatusCode, body, resp.ContentLength, want)
		}
	}
	if served, back := ts.loop.Stats(); served != 3 || back != 0 {
		t.Fatalf("served %d, handed back %d; want 3, 0", served, back)
	}
}

// Another path on a taken connection goes back to net/http, pipelined or
// not, and the connection is taken again at its next fast request.
func TestHandBack(t *testing.T) {
	ts := newTestServer(t, Config{})
	c := ts.dial(t)
	c.send(get("/fast/a"))
	c.read("GET")
	c.send(get("/other") + get("/fast/b"))
	if _, body := c.read("GET"); body != "other GET /other" {
		t.Fatalf("handed back: %q", body)
	}
	if _, body := c.read("GET"); body != "fast /fast/b  " {
		t.Fatalf("taken again: %q", body)
	}
	c.send("POST /fast/c HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nbody")
	if _, body := c.read("POST"); body != "fast /fast/c  " { // net/http's, not the loop's
		t.Fatalf("POST: %q", body)
	}
	served, back := ts.loop.Stats()
	if served != 2 || back != 2 {
		t.Fatalf("served %d, handed back %d; want 2, 2", served, back)
	}
}

// A head the loop does not take plainly goes to net/http, which judges it.
func TestMalformedGoesToNetHTTP(t *testing.T) {
	for name, req := range map[string]string{
		"no colon":      "GET /fast/b HTTP/1.1\r\nHost: test\r\nBad Header\r\n\r\n",
		"no host":       "GET /fast/b HTTP/1.1\r\n\r\n",
		"two hosts":     "GET /fast/b HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"folded header": "GET /fast/b HTTP/1.1\r\nHost: test\r\nX-A: 1\r\n  2\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			ts := newTestServer(t, Config{})
			c := ts.dial(t)
			c.send(get("/fast/a"))
			c.read("GET")
			c.send(req)
			resp, body := c.read("GET")
			if _, back := ts.loop.Stats(); back != 1 {
				t.Fatalf("handed back %d times, want 1", back)
			}
			if name != "folded header" && resp.StatusCode != http.StatusBadRequest { // net/http unfolds that one
				t.Fatalf("%d %q, want 400 from net/http", resp.StatusCode, body)
			}
		})
	}
}

func TestHeadTooLarge(t *testing.T) {
	ts := newTestServer(t, Config{MaxHead: 1024})
	c := ts.dial(t)
	c.send(get("/fast/a"))
	c.read("GET")
	c.send(get("/fast/b", "X-Big: "+strings.Repeat("a", 2000)+"\r\n"))
	if resp, _ := c.read("GET"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("%d, want 431", resp.StatusCode)
	}
	if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after 431: %v, want EOF", err)
	}
}

func TestConnectionClose(t *testing.T) {
	ts := newTestServer(t, Config{})
	c := ts.dial(t)
	c.send(get("/fast/a"))
	c.read("GET")
	c.send(get("/fast/b", "Connection: close\r\n"))
	if _, body := c.read("GET"); body != "fast /fast/b  " {
		t.Fatalf("%q", body)
	}
	if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after Connection: close: %v, want EOF", err)
	}
}

// Answers without a Content-Length are sent with one; HEAD gets no body;
// 304 has neither.
func TestAnswerShapes(t *testing.T) {
	ts := newTestServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fast/chunks":
			_, _ = io.WriteString(w, "one ")
			_, _ = io.WriteString(w, "two")
		case "/fast/304":
			w.WriteHeader(http.StatusNotModified)
		case "/fast/short":
			w.Header().Set("Content-Length", "10")
			_, _ = io.WriteString(w, "abc")
		}
	})})
	c := ts.dial(t)
	c.send(get("/fast/chunks"))
	if resp, body := c.read("GET"); body != "one two" || resp.ContentLength != 7 {
		t.Fatalf("chunks: %q, length %d", body, resp.ContentLength)
	}
	c.send("HEAD /fast/chunks HTTP/1.1\r\nHost: test\r\n\r\n" + get("/fast/304"))
	if resp, body := c.read("HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	if resp, body := c.read("GET"); resp.StatusCode != 304 || body != "" || resp.Header.Get("Content-Length") != "" {
		t.Fatalf("304: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// A handler that writes less than its Content-Length: the connection
	// cannot go on, and the client sees it end.
	c.send(get("/fast/short"))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v, want unexpected EOF", err)
	}
}

// Close ends the connections the loop holds, and the requests waiting in
// them.
func TestCloseEndsConnections(t *testing.T) {
	entered := make(chan struct{}, 1)
	ts := newTestServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast/wait" {
			entered <- struct{}{}
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "ok")
	})})
	c := ts.dial(t)
	c.send(get("/fast/a"))
	c.read("GET")
	c.send(get("/fast/wait"))
	<-entered
	ts.loop.Close()
	if _, err := io.ReadAll(c.r); err != nil {
		t.Fatalf("after Close: %v", err)
	}
}

// A connection idle past Config.Idle is closed.
func TestIdle(t *testing.T) {
	ts := newTestServer(t, Config{Idle: 1500 * time.Millisecond})
	c := ts.dial(t)
	c.send(get("/fast/a"))
	c.read("GET")
	if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) { // waits for the server to close
		t.Fatalf("idle: %v, want EOF", err)
	}
}

func TestParseHeadAgreesWithNetHTTP(t *testing.T) {
	for _, s := range headSeeds {
		checkHead(t, []byte(s))
	}
}

var headSeeds = []string{
	"GET /hls/a/index.m3u8?_HLS_msn=3&_HLS_part=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: y\r\nAccept: */*\r\n\r\n",
	"HEAD /a HTTP/1.1\r\nhost: x\r\nConnection: close\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-A: a\r\nX-A: b\r\n\r\n",
	"GET /a HTTP/1.0\r\nHost: x\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\nX:\t v \r\n\r\n",
	"POST /a HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\nX-\x01: v\r\n\r\n",
	"GET /a\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
}

// checkHead: whatever parseHead takes, net/http reads too, to the same
// method, target, host and fields.
func checkHead(t *testing.T, b []byte) {
	h, ok := parseHead(b)
	if !ok {
		return
	}
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("%q: taken, but net/http refuses it: %v", b, err)
	}
	if r.Method != string(h.method) || r.RequestURI != string(h.target) || r.Host != string(h.host) || r.Close != h.close {
		t.Fatalf("%q: method %q target %q host %q close %v; net/http %q %q %q %v", b, h.method, h.target, h.host, h.close,
			r.Method, r.RequestURI, r.Host, r.Close)
	}
	if _, err := url.ParseRequestURI(string(h.target)); err != nil {
		return // the loop refuses it with 400 (request)
	}
	for _, f := range h.fields {
		found := false
		for _, v := range r.Header.Values(string(f[0])) {
			found = found || v == string(f[1])
		}
		if !found {
			t.Fatalf("%q: field %q: %q, net/http has %q", b, f[0], f[1], r.Header.Values(string(f[0])))
		}
	}
}

func FuzzParseHead(f *testing.F) {
	for _, s := range headSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkHead(t, b) })
}
