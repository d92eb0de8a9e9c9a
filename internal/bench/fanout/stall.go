package fanout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stallGroup is the path of the stalled viewers (Options.Stalled). They use
// ICE-TCP only, and their WHEP answers are rewritten so that the server's
// passive TCP candidates point at a loopback proxy of the tool. The proxy
// forwards both ways until stall is called; from then on it stops reading
// what the server sends (the client side still reaches the server), so
// the server's writes to those viewers block once the socket buffers are
// full, as they do for a client whose network or reader stopped.
type stallGroup struct {
	stopped chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	proxies map[string]net.Listener // by server address
	conns   []net.Conn
}

func newStallGroup() *stallGroup {
	return &stallGroup{stopped: make(chan struct{}), proxies: map[string]net.Listener{}}
}

// stall stops every proxy reading from the server.
func (g *stallGroup) stall() { g.once.Do(func() { close(g.stopped) }) }

func (g *stallGroup) stalled() bool {
	select {
	case <-g.stopped:
		return true
	default:
		return false
	}
}

// close ends the proxies and their connections.
func (g *stallGroup) close() {
	g.mu.Lock()
	g.closed = true
	for _, ln := range g.proxies {
		ln.Close()
	}
	for _, c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// track registers connections for close; false if the group is closed.
func (g *stallGroup) track(cs ...net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns = append(g.conns, cs...)
	return true
}

// proxyFor returns the port of the proxy to target, starting it if needed.
func (g *stallGroup) proxyFor(target string) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errors.New("fanout: stall proxies closed")
	}
	ln, ok := g.proxies[target]
	if !ok {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return 0, fmt.Errorf("fanout: stall proxy: %w", err)
		}
		g.proxies[target] = ln
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.serve(ln, target) }()
	}
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (g *stallGroup) serve(ln net.Listener, target string) {
	for {
		client, err := ln.Accept()
		if err != nil {
			return
		}
		// A small receive buffer, set before connecting so the window is
		// small from the start: a stall then fills the server's socket
		// within seconds rather than after megabytes.
		d := net.Dialer{Timeout: 5 * time.Second, Control: smallReadBuffer}
		server, err := d.Dial("tcp4", target)
		if err != nil {
			client.Close()
			continue
		}
		if !g.track(client, server) {
			client.Close()
			server.Close()
			return
		}
		g.wg.Add(2)
		go func() { defer g.wg.Done(); _, _ = io.Copy(server, client) }()
		go func() { defer g.wg.Done(); g.forward(client, server) }()
	}
}

// forward copies the server's bytes to the client until the stall; then
// it stops reading and leaves both connections open.
func (g *stallGroup) forward(client, server net.Conn) {
	buf := make([]byte, 16<<10)
	for !g.stalled() {
		n, err := server.Read(buf)
		if err != nil || g.stalled() {
			return
		}
		if _, err := client.Write(buf[:n]); err != nil {
			return
		}
	}
}

// rewriteAnswer points the passive ICE-TCP candidates of an SDP answer at
// the proxies (one per server address) and drops its other TCP
// candidates. It fails if there is no loopback passive ICE-TCP candidate:
// the server needs --media-tcp.
func (g *stallGroup) rewriteAnswer(sdp string) (string, error) {
	var out strings.Builder
	found := false
	sc := bufio.NewScanner(strings.NewReader(sdp))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(strings.TrimPrefix(line, "a="))
		if strings.HasPrefix(line, "a=candidate:") && len(f) >= 8 && strings.EqualFold(f[2], "tcp") {
			ip := net.ParseIP(f[4])
			if ip == nil || !ip.IsLoopback() || ip.To4() == nil || !strings.Contains(line, "tcptype passive") {
				continue // only loopback passive IPv4 candidates are proxied
			}
			port, err := g.proxyFor(net.JoinHostPort(f[4], f[5]))
			if err != nil {
				return "", err
			}
			f[4], f[5] = "127.0.0.1", strconv.Itoa(port)
			line = "a=" + strings.Join(f, " ")
			found = true
		}
		out.WriteString(line)
		out.WriteString("\r\n")
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("fanout: answer: %w", err)
	}
	if !found {
		return "", errors.New("fanout: the server's answer has no loopback ICE-TCP candidate (start it with --media-tcp)")
	}
	return out.String(), nil
}

// answerRewriter is the HTTP transport of stalled viewers: it rewrites
// the SDP answer of a WHEP POST (rewriteAnswer) and passes every other
// request through.
type answerRewriter struct {
	base http.RoundTripper
	g    *stallGroup
}

func (a answerRewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || resp.StatusCode != http.StatusCreated {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("fanout: reading the answer: %w", err)
	}
	sdp, err := a.g.rewriteAnswer(string(body))
	if err != nil {
		// The server made a session: end it.
		if loc := resp.Header.Get("Location"); loc != "" {
			a.deleteSession(req, loc)
		}
		return nil, err
	}
	resp.Body = io.NopCloser(strings.NewReader(sdp))
	resp.ContentLength = int64(len(sdp))
	resp.Header.Del("Content-Length")
	return resp, nil
}

func (a answerRewriter) deleteSession(post *http.Request, loc string) {
	u, err := post.URL.Parse(loc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(post.Context()), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return
	}
	if resp, err := a.base.RoundTrip(req); err == nil {
		resp.Body.Close()
	}
}
