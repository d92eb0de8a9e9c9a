package e2e

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Documentation screenshots (docs/screenshots) are taken only by `make
// screenshots` (go test -tags screenshots): a picture checks nothing a
// person would notice that the tests do not assert already, and taking
// one needs the page to have settled, which costs time in every run.
// Without the tag, shot does nothing and TestScreenshots is not built.

// settledJS is true once the page has nothing left to settle for a
// picture: fonts loaded, every shown video with a frame, no finite CSS
// animation or transition running, and two frames painted since.
const settledJS = `(async () => {
  await document.fonts.ready;
  for (const v of document.querySelectorAll('video')) if (v.offsetParent && v.srcObject && (v.readyState < 2 || !v.videoWidth)) return false;
  if (document.getAnimations().some(a => a.playState === 'running' && a.effect && a.effect.getComputedTiming().iterations !== Infinity)) return false;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return true })()`

// shot saves a w×h screenshot of b as docs/screenshots/name once the page
// has settled, when built with -tags screenshots.
func (b *browser) shot(name string, w, h int) {
	b.t.Helper()
	if !screenshots {
		return
	}
	b.waitFor(10*time.Second, "the page settled for the "+name+" screenshot", settledJS)
	saveShot(b.t, name, b.screenshot(), w, h)
}

// saveShot checks that data is a PNG of the expected size and writes it to
// docs/screenshots.
func saveShot(t *testing.T, name string, data []byte, w, h int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", name, err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Fatalf("%s: %dx%d, want %dx%d", name, b.Dx(), b.Dy(), w, h)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "screenshots", name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
