package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// Screen share with the camera as picture-in-picture: the peer sees the share
// flag on the tile and frames keep coming over the same connection (no renegotiation).
func TestScreenShare(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	a.join("screen")
	b.join("screen")
	b.waitMedia(15*time.Second, "Alice")
	sdp := a.inbound()["Bob"].SDP
	a.click("#btn-share")
	a.click("#share-pip")
	a.waitFor(10*time.Second, "sharing", `document.querySelector('#btn-share').textContent.includes('Stop share') && document.querySelector('#btn-share').classList.contains('on')`, `document.body.innerText`)
	b.waitFor(10*time.Second, "Alice's tile marked as a screen", tileJS("Alice")+`.dataset.screen === 'true'`)
	b.waitMedia(10*time.Second, "Alice")
	b.waitFor(10*time.Second, "the shared screen's size", `(() => { const v = `+tileJS("Alice")+`.querySelector('video'); return v.videoWidth > 0 && (v.videoWidth !== 1280 || v.videoHeight !== 720) })()`,
		`(() => { const v = `+tileJS("Alice")+`.querySelector('video'); return [v.videoWidth, v.videoHeight] })()`)
	t.Logf("Bob sees Alice's share at %v", jsonish(eval[any](b, `(() => { const v = `+tileJS("Alice")+`.querySelector('video'); return [v.videoWidth, v.videoHeight] })()`)))
	b.do(30*time.Second, chromedp.EmulateViewport(1280, 800))
	b.shot("screen-share.png", 1280, 800)
	if re, x, y := renegotiated(sdp, a.inbound()["Bob"].SDP); re {
		t.Fatalf("screen sharing renegotiated: %q became %q", x, y)
	}
	a.click("#btn-share")
	a.click("#share-stop")
	b.waitFor(10*time.Second, "the screen flag cleared", tileJS("Alice")+`.dataset.screen === 'false'`)
	b.waitMedia(10*time.Second, "Alice")
}

// Video effects: grayscale on Alice's camera reaches Bob as gray pixels.
func TestGrayscaleEffect(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	a.join("fx")
	b.join("fx")
	b.waitMedia(15*time.Second, "Alice")
	// The fake camera is green; measure how colourful Bob's picture of Alice is.
	colour := `(() => {
	  const v = ` + tileJS("Alice") + `.querySelector('video');
	  const c = document.createElement('canvas'); c.width = 64; c.height = 36;
	  const x = c.getContext('2d'); x.drawImage(v, 0, 0, 64, 36);
	  const d = x.getImageData(0, 0, 64, 36).data; let s = 0;
	  for (let i = 0; i < d.length; i += 4) s += Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]);
	  return s / (d.length / 4);
	})()`
	before := eval[float64](b, colour)
	a.click("#btn-settings")
	a.waitFor(5*time.Second, "the effect selector", `document.querySelector('#effect-select')`)
	a.selectOption("#effect-select", "grayscale")
	b.waitFor(10*time.Second, "a gray picture", colour+` < 12`, colour)
	after := eval[float64](b, colour)
	t.Logf("mean saturation at the receiver: %.1f before, %.1f with grayscale", before, after)
	if before < 40 {
		t.Fatalf("the camera picture was not colourful to begin with (%.1f)", before)
	}
	a.selectOption("#effect-select", "none")
	b.waitFor(10*time.Second, "colour back", colour+` > 40`, colour)
}

// Snapshot (PNG) and local recording (WebM) arrive as downloads.
func TestRecordAndSnapshot(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	dir := t.TempDir()
	if _, err := chromedp.CallBrowser(a.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
		t.Fatal(err)
	}
	a.join("tape")
	b.join("tape")
	a.waitMedia(15*time.Second, "Bob")
	a.click("#btn-snap")
	png := waitDownload(t, dir, ".png")
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatal("the snapshot is not a PNG")
	}
	a.click("#btn-record")
	a.recordChunks(3)
	a.click("#btn-record")
	webm := waitDownload(t, dir, ".webm")
	if !bytes.HasPrefix(webm, []byte{0x1a, 0x45, 0xdf, 0xa3}) || len(webm) < 20000 {
		t.Fatalf("the recording is not a plausible WebM (%d bytes)", len(webm))
	}
	t.Logf("snapshot %d bytes, 3 s recording %d bytes", len(png), len(webm))
}

// recordChunks waits, once the call page is recording, until its recording
// indicator shows n seconds recorded (it counts the recorder's one-second
// chunks of data): n seconds of recording however slowly the machine runs,
// rather than n seconds of wall clock.
func (b *browser) recordChunks(n int) {
	b.t.Helper()
	b.waitFor(10*time.Second, "recording", `document.querySelector('#btn-record').textContent.includes('Stop rec') && document.querySelector('#btn-record').getAttribute('aria-pressed') === 'true' && !document.querySelector('#rec-indicator').hidden`)
	b.waitFor(30*time.Second, fmt.Sprintf("%d seconds recorded", n), fmt.Sprintf(`+(document.querySelector('#rec-indicator').dataset.seconds || 0) >= %d && /^REC \d+:\d\d$/.test(document.querySelector('#rec-indicator').textContent)`, n),
		`[document.querySelector('#rec-indicator').textContent, document.querySelector('#rec-indicator').dataset.seconds]`)
}

func waitDownload(t *testing.T, dir, ext string) []byte {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(dir)
		for _, en := range ents {
			// Chromium writes a download as .crdownload and gives it its
			// name once complete: a file with the name is whole.
			if strings.HasSuffix(en.Name(), ext) && strings.HasPrefix(en.Name(), "parley-") {
				b, err := os.ReadFile(filepath.Join(dir, en.Name()))
				if err == nil && len(b) > 0 {
					return b
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s download in %s", ext, dir)
	return nil
}
