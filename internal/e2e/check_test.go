package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
)

// checkDone is true once the connection check has shown every result.
const checkDone = `document.getElementById('results-region').getAttribute('aria-busy') === 'false' && document.querySelectorAll('#results li').length === 6`

// checkResults are the check page's lines by probe: "status: sentence".
func checkResults(b *browser) map[string]string {
	return eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll('#results li')].map(li => [li.dataset.probe, li.dataset.status + ': ' + li.innerText]))`)
}

// TestCheckPage: on a server with TURN and media (UDP and ICE-TCP) on
// loopback, the connection check says STUN, TURN over UDP and TCP and both
// media ports work, and that TURN over TLS is not offered; it meets WCAG
// 2.1 AA at a desktop and a phone size. On a server with TURN off it says,
// in words, that TURN is not available. With auth on, TURN is checked
// only with an access token in the page's URL. With a certificate and
// --turn-tls, TURN over TLS works too.
func TestCheckPage(t *testing.T) {
	// ICE-TCP on a port of its own: "127.0.0.1:0" would ask for the UDP
	// port's number, which another process on a busy machine may hold.
	tcpAddr := freeAddr(t)
	e := newEnv(t, func(c *config.Config) { c.MediaUDP, c.MediaTCP = "127.0.0.1:0", tcpAddr })
	for _, size := range [][2]int{{1280, 800}, {390, 844}} {
		b := e.launch(fmt.Sprintf("Chk%d", size[0]), withSize(size[0], size[1]))
		// Headless Chromium's window is at least 500 px wide: emulate the
		// phone's viewport.
		b.do(20*time.Second, chromedp.EmulateViewport(int64(size[0]), int64(size[1])), chromedp.Navigate(e.url+"/check"))
		b.waitFor(30*time.Second, "the check's results", checkDone, `document.getElementById('results-region').innerText`)
		got := checkResults(b)
		t.Logf("%dx%d: %v", size[0], size[1], got)
		for probe, want := range map[string]string{
			"stun":      "ok: STUN works",
			"turn-udp":  "ok: TURN over UDP works",
			"turn-tcp":  "ok: TURN over TCP works: calls will connect even if your network blocks UDP",
			"turn-tls":  "unavailable: TURN over TLS: not offered by this server",
			"media-udp": "ok: Media port over UDP works",
			"media-tcp": "ok: Media port over TCP works",
		} {
			if !strings.HasPrefix(got[probe], want) {
				t.Errorf("%dx%d %s: %q, want %q…", size[0], size[1], probe, got[probe], want)
			}
		}
		if s := eval[string](b, `document.getElementById('summary').innerText`); !strings.HasPrefix(s, "Calls, group calls and broadcasts should connect") {
			t.Errorf("summary %q", s)
		}
		if v := a11yViolations(b); v != "" {
			t.Errorf("%dx%d check page: WCAG 2.1 AA violations:\n%s", size[0], size[1], v)
		}
		if w := eval[int](b, `document.documentElement.scrollWidth`); w > size[0] {
			t.Errorf("%dx%d: the page is %d px wide: %s", size[0], size[1], w, eval[string](b, `[...document.querySelectorAll("*")].filter(e => e.getBoundingClientRect().right > innerWidth).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right)).join(", ") + " inner " + innerWidth`))
		}
	}

	off := newEnv(t, func(c *config.Config) { c.TURN = "off"; c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off" })
	b := off.launch("NoTurn")
	b.do(20*time.Second, chromedp.Navigate(off.url+"/check"))
	b.waitFor(30*time.Second, "the check's results", checkDone, `document.getElementById('results-region').innerText`)
	got := checkResults(b)
	for probe, want := range map[string]string{
		"stun":      "unavailable: STUN is not available on this server",
		"turn-udp":  "unavailable: TURN over UDP: TURN is not available on this server",
		"turn-tcp":  "unavailable: TURN over TCP: TURN is not available on this server",
		"media-udp": "ok: Media port over UDP works",
		"media-tcp": "unavailable: Media over TCP: not offered by this server",
	} {
		if !strings.HasPrefix(got[probe], want) {
			t.Errorf("TURN off, %s: %q, want %q…", probe, got[probe], want)
		}
	}
	if s := eval[string](b, `document.getElementById('summary').innerText`); !strings.Contains(s, "TURN is not available on this server.") {
		t.Errorf("TURN off: summary %q", s)
	}

	// With auth on, the relay and the media port are checked only with a token.
	const secret = "e2e-check-secret-of-32-bytes-ok!"
	authed := newEnv(t, func(c *config.Config) { c.AuthSecret, c.MediaUDP = secret, "127.0.0.1:0" })
	tok, err := auth.NewToken([]byte(secret), "any", "ada", auth.Grants{}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"", "?token=" + tok} {
		a := authed.launch("Auth")
		a.do(20*time.Second, chromedp.Navigate(authed.url+"/check"+q))
		a.waitFor(30*time.Second, "the check's results", checkDone, `document.getElementById('results-region').innerText`)
		want := "unavailable: TURN over TCP: not checked: this server lends its relay only to people with an access token"
		if q != "" {
			want = "ok: TURN over TCP works"
		}
		res := checkResults(a)
		if got := res["turn-tcp"]; !strings.HasPrefix(got, want) {
			t.Errorf("auth on, token %v: turn-tcp %q, want %q…", q != "", got, want)
		}
		want = "unavailable: Media over UDP: not checked: this server tests its media port only for people with an access token"
		if q != "" {
			want = "ok: "
		}
		if got := res["media-udp"]; !strings.HasPrefix(got, want) {
			t.Errorf("auth on, token %v: media-udp %q, want %q…", q != "", got, want)
		}
	}

	// TURN over TLS, on a server with a (self-signed) certificate.
	tlsEnv := newEnv(t, func(c *config.Config) { c.TLSSelfSigned, c.TURNTLS = true, "127.0.0.1:0" })
	tb := tlsEnv.launch("TLS", func(o *browserOpts) { o.flags["ignore-certificate-errors"] = true })
	tb.do(20*time.Second, chromedp.Navigate(tlsEnv.url+"/check"))
	tb.waitFor(30*time.Second, "the check's results", checkDone, `document.getElementById('results-region').innerText`)
	if got := checkResults(tb)["turn-tls"]; !strings.HasPrefix(got, "ok: TURN over TLS works") {
		t.Errorf("TURN over TLS: %q", got)
	}

	// Servers that do not answer are reported blocked (a closed port on
	// loopback: STUN and TURN over UDP get no answer, TURN over TCP is
	// refused), and the page's words for that.
	dead := `'127.0.0.1:9'`
	blocked := eval[[]string](b, `import('/lib/check.js').then(c => Promise.all([
	  c.probeStun({urls: 'stun:' + `+dead+`}, 3000),
	  c.probeTurn('turn-udp', {urls: 'turn:' + `+dead+` + '?transport=udp', username: 'u', credential: 'p'}, 3000),
	  c.probeTurn('turn-tcp', {urls: 'turn:' + `+dead+` + '?transport=tcp', username: 'u', credential: 'p'}, 3000),
	])).then(rs => rs.map(r => r.id + ' ' + r.status))`)
	if strings.Join(blocked, ", ") != "stun blocked, turn-udp blocked, turn-tcp blocked" {
		t.Errorf("probes of a closed port: %v", blocked)
	}
}
