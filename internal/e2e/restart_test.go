package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// procServer is Parley run as its own process (the real binary), so a test
// can kill it the way an operator's SIGTERM or a crash (SIGKILL) does and
// start it again on the same ports.
type procServer struct {
	t    *testing.T
	bin  string
	args []string
	url  string
	addr string

	mu  sync.Mutex
	cmd *exec.Cmd
	out *bytes.Buffer // the server's log, shown when the test fails
}

// freeAddr is a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcServer builds ./cmd/parley into a temporary directory and runs it
// on fixed loopback ports.
func startProcServer(t *testing.T) *procServer {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "parley")
	build := exec.Command("go", "build", "-o", bin, "github.com/parley/parley/cmd/parley")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building parley: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	p := &procServer{t: t, bin: bin, addr: addr, url: "http://" + addr, out: &bytes.Buffer{},
		args: []string{"serve", "--http", addr, "--ops", "off", "--turn", "off", "--public-ip", "127.0.0.1",
			"--media-udp", "off", "--media-tcp", "off", "--rtmp", "off", "--rtsp", "off", "--srt", "off",
			"--data-dir", t.TempDir(), "--log-level", "debug"}}
	t.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			p.mu.Lock()
			t.Logf("server log:\n%s", p.out.String())
			p.mu.Unlock()
		}
	})
	p.start()
	return p
}

// start runs the server and returns once its listener accepts, and when.
func (p *procServer) start() time.Time {
	p.t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	p.mu.Lock()
	fmt.Fprintf(p.out, "--- start %s\n", time.Now().Format("15:04:05.000"))
	cmd.Stdout, cmd.Stderr = p.out, p.out
	p.mu.Unlock()
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting parley: %v", err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
			c.Close()
			return time.Now()
		}
		time.Sleep(10 * time.Millisecond) // polling for the listener, with a deadline
	}
	p.t.Fatalf("parley did not listen on %s within 30 s", p.addr)
	return time.Time{}
}

// stop sends sig and waits for the process to end.
func (p *procServer) stop(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// restartCall puts browsers in room (query: "mode=sfu" for a group room;
// a browser in overHTTP uses the long-poll transport) on a Parley process, stops the process with sig, starts it again on the
// same port, and waits for every browser to be back in the room by itself
// (no click), decoding the others' media and chatting. It returns the
// time from the listener being back to the last browser rejoined.
func restartCall(t *testing.T, p *procServer, bs []*browser, room, query string, sig syscall.Signal, overHTTP ...*browser) time.Duration {
	t.Helper()
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.name
	}
	for _, b := range bs {
		if slices.Contains(overHTTP, b) {
			b.join(room, query, "transport=http")
		} else {
			b.join(room, query)
		}
	}
	for _, b := range bs {
		b.waitMedia(30*time.Second, others(names, b.name)...)
	}
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = eval[string](b, `parleyApp.client.id`)
		// What the person sees: errors (toasts, console) and the state changes.
		eval[bool](b, `(window.rj = {toasts: [], states: [], shutdown: false, at: 0}, new MutationObserver(() => {
		  for (const el of document.querySelectorAll('.toast')) if (!rj.toasts.includes(el.textContent)) rj.toasts.push(el.textContent);
		}).observe(document.body, {childList: true, subtree: true}),
		  parleyApp.client.addEventListener('state', (e) => rj.states.push(e.detail.state)),
		  parleyApp.client.addEventListener('reconnecting', (e) => { if (e.detail.restarting) rj.shutdown = true; }),
		  parleyApp.client.addEventListener('joined', () => { rj.at = Date.now(); }), true)`)
	}
	p.stop(sig)
	for _, b := range bs {
		b.waitFor(10*time.Second, "the reconnect banner", `!document.querySelector('#banner').hidden && parleyApp.client.state === 'reconnecting'`, `[parleyApp.client.state, document.body.innerText]`)
	}
	back := p.start()
	var last time.Time
	for i, b := range bs {
		b.waitFor(20*time.Second, "rejoined by itself", `parleyApp.client.state === 'joined' && parleyApp.client.id !== `+jsString(ids[i])+` && document.querySelector('#banner').hidden && rj.at > 0`,
			`[parleyApp.client.state, rj, document.body.innerText]`)
		at := time.UnixMilli(int64(eval[float64](b, `rj.at`)))
		if at.After(last) {
			last = at
		}
	}
	for _, b := range bs {
		b.waitFor(20*time.Second, "everyone's tile back", fmt.Sprintf(`parleyApp.client.peers.size === %d`, len(bs)-1), `[...parleyApp.client.peers.values()].map(p => p.name)`)
		b.waitMedia(30*time.Second, others(names, b.name)...)
		if sig == syscall.SIGTERM && !eval[bool](b, `rj.shutdown`) {
			t.Errorf("%s: the page was not told the server was restarting", b.name)
		}
		// Nothing the person reads as an error: no "left" or error toast.
		for _, msg := range eval[[]string](b, `rj.toasts`) {
			if msg != "Reconnected" {
				t.Errorf("%s: toast during the restart: %q", b.name, msg)
			}
		}
	}
	// Chat works again: the first one writes, the others read it.
	text := "back after " + sig.String()
	bs[0].waitFor(15*time.Second, "chat channels open", `[...parleyApp.client.peers.values()].every(p => p.channels.chat && p.channels.chat.readyState === 'open')`)
	bs[0].click("#btn-chat")
	bs[0].do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), text), chromedp.Click(chromedp.CSS("#chat-send")))
	for _, b := range bs[1:] {
		b.click("#btn-chat")
		b.waitFor(10*time.Second, "the chat message", `document.querySelector('#chat-list').textContent.includes(`+jsString(text)+`)`, `document.querySelector('#chat-list').innerText`)
	}
	took := last.Sub(back)
	t.Logf("%s, %s room: all %d browsers rejoined %v after the listener was back", sig, query, len(bs), took.Round(time.Millisecond))
	return took
}

// The server crashes (SIGKILL) mid-call in a p2p room: when it is back the
// browsers rejoin by themselves, without a click and without an error;
// Bob's page signals over HTTP long-poll.
func TestServerKillRejoins(t *testing.T) {
	p := startProcServer(t)
	e := &env{t: t, chrome: chromiumPath(t), url: p.url}
	a, b := e.launch("Alice"), e.launch("Bob")
	restartCall(t, p, []*browser{a, b}, "crash", "", syscall.SIGKILL, b)
}

// The operator restarts the server (SIGTERM) during a group (SFU) call:
// the server says it is going away (server-shutdown), the pages say the
// server is restarting, and rejoin by themselves when it is back; Bob's
// page signals over HTTP long-poll, and gets the goodbye with its poll.
func TestServerTermRejoinsSFU(t *testing.T) {
	p := startProcServer(t)
	e := &env{t: t, chrome: chromiumPath(t), url: p.url}
	a, b := e.launch("Alice"), e.launch("Bob")
	restartCall(t, p, []*browser{a, b}, "deploy", "mode=sfu", syscall.SIGTERM, b)
}

// TestBenchRejoin measures the time from a restarted server's listener
// being back to the last of three browsers rejoined, for SIGKILL (p2p)
// and SIGTERM (sfu), three rounds each with three fresh browsers (a
// fourth call page in the same tab sent no video in two runs, before any
// restart: a harness matter, not explained yet). Run with PARLEY_BENCH=1:
//
//	PARLEY_BENCH=1 go test ./internal/e2e -run TestBenchRejoin -v -count=1
func TestBenchRejoin(t *testing.T) {
	if os.Getenv("PARLEY_BENCH") == "" {
		t.Skip("set PARLEY_BENCH=1 to run the browser benchmark")
	}
	p := startProcServer(t)
	e := &env{t: t, chrome: chromiumPath(t), url: p.url}
	for _, c := range []struct {
		sig   syscall.Signal
		query string
	}{{syscall.SIGKILL, ""}, {syscall.SIGTERM, "mode=sfu"}} {
		bs := []*browser{e.launch("Alice"), e.launch("Bob"), e.launch("Carol")}
		var ms []float64
		for i := range 3 {
			d := restartCall(t, p, bs, fmt.Sprintf("rejoin-%d-%d", c.sig, i), c.query, c.sig)
			ms = append(ms, float64(d.Milliseconds()))
		}
		s := slices.Clone(ms)
		slices.Sort(s)
		t.Logf("rejoin after %s (%s): ms %v; median %.0f, max %.0f", c.sig, c.query, ms, s[1], s[2])
		for _, b := range bs { // out of the room, so they do not rejoin in the next rounds
			b.do(20*time.Second, chromedp.Navigate("about:blank"))
		}
	}
}

// Alice's connection dies without anyone knowing: signaling messages sent
// to her and by her meanwhile go into the void. When the drop is noticed
// her page resumes, and each of those messages arrives once, in order,
// both ways.
func TestDeadSocketLosesNothing(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	proxy := newCutProxy(t, e.url)
	a.base = proxy.url
	a.join("lossless")
	b.join("lossless")
	a.waitMedia(20*time.Second, "Bob")
	// Probes: signals with data the peers ignore, recorded on arrival.
	record := `(window.probes = [], window.resumedCount = 0, (() => { const c = parleyApp.client;
	  c.addEventListener('signal', (e) => { const d = e.detail.data; if (d && d.probe) probes.push(d.probe); });
	  c.addEventListener('resumed', () => resumedCount++); })(), true)`
	eval[bool](a, record)
	eval[bool](b, record)
	aliceID, bobID := eval[string](a, `parleyApp.client.id`), eval[string](b, `parleyApp.client.id`)
	probe := func(x *browser, to, text string) {
		eval[bool](x, `(parleyApp.client.send({type: 'signal', to: `+jsString(to)+`, data: {probe: `+jsString(text)+`}}), true)`)
	}
	probe(b, aliceID, "b1")
	probe(a, bobID, "a1")
	a.waitFor(10*time.Second, "b1", `probes.join() === 'b1'`, `probes`)
	b.waitFor(10*time.Second, "a1", `probes.join() === 'a1'`, `probes`)
	proxy.freeze()
	for _, s := range []string{"2", "3"} {
		probe(b, aliceID, "b"+s)
		probe(a, bobID, "a"+s)
	}
	// Bob's probes reach the server, which writes them into the dead
	// connection: they are gone, as Alice's are.
	for deadline := time.Now().Add(10 * time.Second); proxy.lost.Load() < 2*int64(len(`{"type":"signal","from":"`+bobID+`","data":{"probe":"b2"}}`)); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server wrote %d bytes to Alice's dead connection, want Bob's two probes", proxy.lost.Load())
		}
	}
	proxy.cut()
	a.waitFor(20*time.Second, "the page resumed its member", `resumedCount === 1 && parleyApp.client.state === 'joined'`, `[parleyApp.client.state, probes]`)
	probe(b, aliceID, "b4")
	probe(a, bobID, "a4")
	a.waitFor(10*time.Second, "Bob's probes, each once, in order", `probes.join() === 'b1,b2,b3,b4'`, `probes`)
	b.waitFor(10*time.Second, "Alice's probes, each once, in order", `probes.join() === 'a1,a2,a3,a4'`, `probes`)
	if got := eval[string](a, `parleyApp.client.id`); got != aliceID {
		t.Fatalf("Alice came back as %s, want the same member %s", got, aliceID)
	}
}
