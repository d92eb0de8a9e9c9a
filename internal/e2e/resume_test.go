package e2e

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cutProxy forwards TCP to the server and can break every connection it
// carries at once, the way a dropped network does: no close frame, the
// sockets just go. New connections still get through (the network is back).
// Before that it can freeze: the connections stay open and what goes
// through them is dropped both ways, as on a network that died without
// either end knowing yet.
type cutProxy struct {
	ln     net.Listener
	url    string
	mu     sync.Mutex
	conns  []net.Conn
	frozen bool
	lost   atomic.Int64 // bytes from the server dropped while frozen
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, url: "http://" + ln.Addr().String()}
	addr := strings.TrimPrefix(target, "http://")
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.pipe(s, c, nil); s.Close() }()
			go func() { defer p.wg.Done(); p.pipe(c, s, &p.lost); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

// pipe copies from src to dst, dropping (and counting in lost) what it
// reads while frozen.
func (p *cutProxy) pipe(dst, src net.Conn, lost *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			frozen := p.frozen
			p.mu.Unlock()
			if frozen && lost != nil {
				lost.Add(int64(n))
			}
			if !frozen {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cutProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

// cut closes every connection; new ones get through, unfrozen.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns, p.frozen = nil, false
}

// Alice's signaling connection drops in a call: her page resumes the same
// member, and Bob sees no leave or join, keeps her tile, and her media.
func TestWebSocketDropResumes(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	proxy := newCutProxy(t, e.url)
	a.base = proxy.url
	a.join("survive")
	b.join("survive")
	a.waitMedia(20*time.Second, "Bob")
	b.waitMedia(20*time.Second, "Alice")
	id := eval[string](a, `parleyApp.client.id`)
	eval[bool](a, `(window.resumedCount = 0, parleyApp.client.addEventListener('resumed', () => resumedCount++), true)`)
	eval[bool](b, `(window.churn = [], ['peer-left', 'peer-joined'].forEach((k) => parleyApp.client.addEventListener(k, () => churn.push(k))), window.tileEl = `+tileJS("Alice")+`, true)`)
	proxy.cut()
	a.waitFor(20*time.Second, "the page resumed its member", `window.resumedCount === 1 && parleyApp.client.state === 'joined'`,
		`[parleyApp.client.state, document.body.innerText]`)
	if got := eval[string](a, `parleyApp.client.id`); got != id {
		t.Fatalf("resumed as %s, want the same member %s", got, id)
	}
	b.waitMedia(20*time.Second, "Alice")
	if churn := eval[[]string](b, `window.churn`); len(churn) != 0 {
		t.Fatalf("Bob saw %v during Alice's drop", churn)
	}
	if !eval[bool](b, `window.tileEl === `+tileJS("Alice")+` && window.tileEl.isConnected`) {
		t.Fatal("Alice's tile on Bob's page was replaced")
	}
}
