package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/config"
)

// TestRecordingUI: a host whose token has the admin grant records the
// broadcast from the publisher page (Record, then Stop recording, by
// keyboard), the Recordings page lists the file with a Download link
// that serves it, and deletes it. A host with a publish-only token has
// no Record button.
func TestRecordingUI(t *testing.T) {
	secret := "e2e-recording-secret-0123456789abcdef"
	dir := t.TempDir()
	e := newEnv(t, func(c *config.Config) {
		c.MediaUDP, c.MediaTCP = "127.0.0.1:0", "off"
		c.AuthSecret, c.RecordDir = secret, dir
	})
	mint := func(g auth.Grants) string {
		tok, err := auth.NewToken([]byte(secret), "rec", "host", g, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	admin := mint(auth.Grants{Publish: true, Subscribe: true, Admin: true})

	plain := e.openPublisher("Plain", "rec", "token="+mint(auth.Grants{Publish: true}))
	plain.waitFor(5*time.Second, "the page settled", `document.readyState === 'complete'`)
	if eval[bool](plain, `!!document.querySelector('#record')`) {
		t.Error("a publish-only host has a Record button")
	}
	plain.do(10*time.Second, chromedp.Navigate("about:blank"))

	pub := e.openPublisher("Host", "rec", "res=360&fps=15&token="+admin)
	pub.click("#go-live")
	pub.waitFor(15*time.Second, "the publisher live", `document.body.dataset.state === 'live'`, `document.querySelector('#status').textContent`)
	pub.waitFor(10*time.Second, "the Record button", `document.querySelector('#record')?.getAttribute('aria-pressed') === 'false'`)
	pub.do(10*time.Second, chromedp.Focus(chromedp.CSS("#record"), chromedp.NodeVisible), chromedp.KeyEvent("\r"))
	pub.waitFor(15*time.Second, "recording on", `document.querySelector('#record').getAttribute('aria-pressed') === 'true'`,
		`[document.querySelector('#record').textContent, document.querySelector('#toasts')?.innerText]`)
	// Let a few fragments be written (the file's duration is read back).
	pub.waitFor(30*time.Second, "3 s recorded", `(async () => { const l = await (await fetch('/api/recordings', {headers: {Authorization: 'Bearer `+admin+`'}})).json();
	  return l.files.some(f => f.stream === 'rec' && f.duration >= 3) })()`)
	pub.do(10*time.Second, chromedp.Focus(chromedp.CSS("#record"), chromedp.NodeVisible), chromedp.KeyEvent(" "))
	pub.waitFor(15*time.Second, "recording off", `document.querySelector('#record').getAttribute('aria-pressed') === 'false'`)

	b := e.launch("Ops")
	b.do(20*time.Second, chromedp.Navigate(e.srv.OpsURL()+"/recordings?token="+admin))
	b.waitFor(10*time.Second, "the file listed", `[...document.querySelectorAll('#files a')].some(a => a.textContent === 'Download')`, `document.body.innerText`)
	href := eval[string](b, `document.querySelector('#files a').href`)
	size := eval[float64](b, `(async () => (await (await fetch(document.querySelector('#files a').href)).arrayBuffer()).byteLength)()`)
	files, _ := filepath.Glob(filepath.Join(dir, "rec", "rec-*"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	if st, err := os.Stat(files[0]); err != nil || int64(size) != st.Size() {
		t.Errorf("downloaded %v bytes from %s, the file has %v (%v)", size, href, st.Size(), err)
	}
	eval[bool](b, `(() => { window.confirm = () => true; return true })()`)
	b.do(10*time.Second, chromedp.Focus(chromedp.CSS(`#files button`), chromedp.NodeVisible), chromedp.KeyEvent("\r"))
	b.waitFor(10*time.Second, "the file deleted", `document.querySelector('#done').textContent.startsWith('Delete') && document.querySelectorAll('#files a').length === 0`,
		`[document.querySelector('#done').textContent, document.querySelector('#error').textContent]`)
	if _, err := os.Stat(files[0]); !os.IsNotExist(err) {
		t.Errorf("the file is still there: %v", err)
	}
}

// TestRecordingCallButton: an admin in an sfu call records it on the
// server from the call page (by keyboard): a file per participant track
// and a manifest; a member without the admin grant has no such button.
func TestRecordingCallButton(t *testing.T) {
	secret := "e2e-recording-call-secret-0123456789"
	dir := t.TempDir()
	e := newEnv(t, func(c *config.Config) {
		c.AuthSecret, c.RecordDir = secret, dir
		c.MediaUDP = "127.0.0.1:0"
		c.Rooms = map[string]config.RoomConfig{"board": {Mode: "sfu"}}
	})
	token := func(name string, g auth.Grants) string {
		tok, err := auth.NewToken([]byte(secret), "board", name, g, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	adminTok := token("ana", auth.Grants{Publish: true, Subscribe: true, Admin: true})
	ana, ben := e.launch("Ana"), e.launch("Ben")
	ana.join("board", "token="+adminTok)
	ben.join("board", "token="+token("ben", auth.AllGrants))
	ana.waitMedia(25*time.Second, "Ben")
	ana.waitFor(10*time.Second, "the server recording button", `document.querySelector('#btn-server-record')?.getAttribute('aria-pressed') === 'false'`)
	if eval[bool](ben, `!!document.querySelector('#btn-server-record')`) {
		t.Error("a member without the admin grant can record the call on the server")
	}
	ana.pressOn("#btn-server-record", "\r")
	ana.waitFor(15*time.Second, "recording on", `document.querySelector('#btn-server-record').getAttribute('aria-pressed') === 'true'`,
		`document.querySelector('#toasts')?.innerText`)
	ana.waitFor(30*time.Second, "both members' tracks recorded", `(async () => { const l = await (await fetch('/api/recordings', {headers: {Authorization: 'Bearer `+adminTok+`'}})).json();
	  return l.files.filter(f => f.room === 'board' && f.format !== 'json' && f.size > 0).length >= 4 })()`)
	ana.pressOn("#btn-server-record", " ")
	ana.waitFor(15*time.Second, "recording off", `document.querySelector('#btn-server-record').getAttribute('aria-pressed') === 'false'`)
	manifests, _ := filepath.Glob(filepath.Join(dir, "@rooms", "board", "board-*", "manifest.json"))
	if len(manifests) != 1 {
		t.Fatalf("manifests %v", manifests)
	}
	b, err := os.ReadFile(manifests[0])
	if err != nil || !strings.Contains(string(b), `"end"`) {
		t.Errorf("manifest %s %v", b, err)
	}
}
