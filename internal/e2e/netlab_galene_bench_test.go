package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/parley/parley/internal/netlab"
)

// TestBenchLossyCallGalene is TestBenchLossyCall with Galène
// (https://galene.org) as the server: the same lab, the same three
// Chromium members behind the same impaired links, the same figures, read
// from getStats of Galène's own web client (galene.html). Galène is a
// reference to compare with, not a dependency: the benchmark is skipped
// unless PARLEY_BENCH=1, PARLEY_GALENE (a Galène binary) and
// PARLEY_GALENE_STATIC (its static/ directory, the web client) are set.
//
//	cd /tmp/galene-src && CGO_ENABLED=0 go build -o /tmp/galene-bin
//	PARLEY_BENCH=1 PARLEY_LOSSY=issue PARLEY_GALENE=/tmp/galene-bin PARLEY_GALENE_STATIC=/tmp/galene-src/static \
//	  flock /tmp/parley-browser.lock go test ./internal/e2e -run 'TestBenchLossyCallGalene$' -v -count=1 -timeout 10m
func TestBenchLossyCallGalene(t *testing.T) {
	bin, static := os.Getenv("PARLEY_GALENE"), os.Getenv("PARLEY_GALENE_STATIC")
	if os.Getenv("PARLEY_BENCH") == "" || bin == "" || static == "" {
		t.Skip("set PARLEY_BENCH=1, PARLEY_GALENE and PARLEY_GALENE_STATIC to run the Galène benchmark")
	}
	m, seconds := lossyBenchSettings(t)
	lab := netlab.New(t)
	names := []string{"Ana", "Ben", "Cy"}
	g := &lossyGroup{lab: lab, names: names, stats: galeneStats}
	for range names {
		g.clients = append(g.clients, addImpairedClient(t, lab, netlab.PortRestricted, m))
	}
	url := startGalene(t, bin, static, lab.HostIP.String())
	// A stand-in env: the browsers need only its Chromium and origin.
	g.env = &env{t: t, chrome: chromiumPath(t), url: url}
	for i, n := range names {
		b := g.env.launchIn(g.clients[i], n)
		galeneJoin(b, url+"/group/lossy/")
		g.members = append(g.members, b)
	}
	for _, b := range g.members {
		b.waitFor(60*time.Second, "video decoded from every other member", `(async () => { const s = await `+galeneStatsJS+`;
		  return `+jsonish(others(names, b.name))+`.every(n => s[n] && s[n].framesDecoded > 0) })()`,
			`(async () => JSON.stringify({stats: await `+galeneStatsJS+`, down: Object.values(serverConnection.down).map(c => [c.username, c.pc && c.pc.connectionState]),
			  up: Object.values(serverConnection.up).map(c => c.pc && c.pc.connectionState), text: document.body.innerText.slice(0, 200)}))()`)
	}
	measureLossyCall(t, g, m, seconds)
	for _, b := range g.members {
		t.Logf("%s sends %s", b.name, b.sendingOn(`Object.values(serverConnection.up).map(c => c.pc)`))
	}
}

// startGalene runs Galène on host (plain HTTP, no TURN) with a group
// "lossy" that lets anyone in to present, and returns its origin.
func startGalene(t *testing.T, bin, static, host string) string {
	t.Helper()
	dir := t.TempDir()
	groups := filepath.Join(dir, "groups")
	if err := os.MkdirAll(groups, 0o755); err != nil {
		t.Fatal(err)
	}
	group := `{"wildcard-user": {"password": {"type": "wildcard"}, "permissions": "present"}}`
	if err := os.WriteFile(filepath.Join(groups, "lossy.json"), []byte(group), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-insecure", "-http", addr, "-turn", "",
		"-data", filepath.Join(dir, "data"), "-groups", groups, "-static", static, "-recordings", filepath.Join(dir, "rec"))
	logPath := filepath.Join(dir, "galene.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	defer logFile.Close() // the process has its own descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting Galène: %v", err)
	}
	galeneLog := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("--- Galène's log ---\n%s", galeneLog())
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url + "/group/lossy/") //nolint:noctx // a readiness probe
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("Galène exited: %v\n%s", err, galeneLog())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("Galène not answering on %s: %v\n%s", url, err, galeneLog())
		}
	}
}

// galeneJoin opens Galène's group page and connects as b.name with camera
// and microphone ("Enable: camera and microphone"), the way a person does,
// with simulcast on (as Parley's members send it; Galène's "auto" switches
// it on at the third member by replacing each member's stream, and its
// server drops a client that asks for a stream just replaced). Page
// errors are Galène's, not Parley's: logged, not failed.
func galeneJoin(b *browser, page string) {
	b.t.Helper()
	b.t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, l := range b.console {
			if strings.Contains(l, "exception:") {
				b.t.Logf("%s: Galène's page: %s", b.name, l)
			}
		}
		b.console = nil
	})
	b.do(30*time.Second, chromedp.Navigate(page))
	eval[bool](b, `(() => { sessionStorage.setItem('settings', JSON.stringify({simulcast: 'on'})); return true })()`)
	b.do(30*time.Second, chromedp.Navigate(page))
	b.waitFor(15*time.Second, "Galène's login form", `!!document.querySelector('#connectbutton') && document.querySelector('#userform').offsetParent !== null &&
	  document.querySelector('#simulcastselect').value === 'on'`)
	b.do(20*time.Second, chromedp.SendKeys(chromedp.CSS("#username"), b.name), chromedp.SendKeys(chromedp.CSS("#password"), "x"))
	b.click("#presentboth")
	b.click("#connectbutton")
	b.waitFor(60*time.Second, "connected and sending camera and microphone", `typeof serverConnection !== 'undefined' && serverConnection && serverConnection.socket &&
	  Object.values(serverConnection.up).some(c => c.pc && c.pc.connectionState === 'connected')`,
		`[document.body.innerText.slice(0, 300), typeof serverConnection !== 'undefined' && serverConnection && Object.values(serverConnection.up).map(c => c.pc && c.pc.connectionState)]`)
}

// galeneStatsJS is mediaStatsJS for Galène's web client: one peer
// connection per stream received (serverConnection.down), named by its
// publisher's username.
const galeneStatsJS = `(async () => {
  ` + addInboundJS + `
  const out = {};
  for (const c of Object.values(serverConnection.down)) {
    if (!c.pc) continue;
    const r = await c.pc.getStats();
    const o = {state: c.pc.connectionState, iceConnectionState: c.pc.iceConnectionState, framesDecoded: 0, framesDropped: 0, freezeCount: 0, totalFreezesDuration: 0,
      concealedSamples: 0, totalSamplesReceived: 0, frameWidth: 0, at: 0, videoPacketsLost: 0, nackCount: 0, videoPacketsRecv: 0};
    r.forEach(s => { if (s.type === 'inbound-rtp') addInbound(o, s); });
    out[c.username] = o;
  }
  return out;
})()`

// galeneStats samples what b receives from each remote member in Galène's client.
func galeneStats(b *browser) map[string]mediaStat {
	b.t.Helper()
	return eval[map[string]mediaStat](b, galeneStatsJS)
}
