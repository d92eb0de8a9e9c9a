package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// writeRandomFile creates a file of n pseudo-random bytes and returns its path and SHA-256.
func writeRandomFile(t *testing.T, name string, n int, seed uint64) (string, string) {
	t.Helper()
	buf := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			buf[i+k] = byte(v >> (8 * k))
		}
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf)
	return p, hex.EncodeToString(sum[:])
}

// receivedSHA is the SHA-256 of the blob behind the download link of a received file.
func receivedSHA(name string) string {
	return `(async () => {
	  const li = [...document.querySelectorAll('.transfer[data-direction="in"]')].find(l => l.querySelector('.tr-name').textContent === ` + jsString(name) + `);
	  const a = li && li.querySelector('a.download-link');
	  if (!a || a.getAttribute('download') !== ` + jsString(name) + `) return 'no download link';
	  const buf = await (await fetch(a.href)).arrayBuffer();
	  return [...new Uint8Array(await crypto.subtle.digest('SHA-256', buf))].map(b => b.toString(16).padStart(2, '0')).join('');
	})()`
}

func transferDone(dir, name string) string {
	return `[...document.querySelectorAll('.transfer[data-direction="` + dir + `"]')].some(l => l.querySelector('.tr-name').textContent === ` + jsString(name) + ` && l.dataset.state === 'done' && l.dataset.progress === '100')`
}

// 4. File: a 5 MiB file reaches the other browser with the same SHA-256 and both
// progress bars reach 100 %. A second file sent at the same time must not corrupt it.
func TestFileTransfer(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	a.join("files")
	b.join("files")
	a.waitFor(15*time.Second, "the file channel open", `[...parleyApp.client.peers.values()].length === 1 && [...parleyApp.client.peers.values()][0].channels.file.readyState === 'open'`)
	big, bigSHA := writeRandomFile(t, "big.bin", 5<<20, 1)
	small, smallSHA := writeRandomFile(t, "small notes.bin", 700<<10+123, 2)
	a.click("#btn-files")
	b.click("#btn-files")
	start := time.Now()
	// Both files at once: two transfers interleave on the same channel.
	a.do(30*time.Second, chromedp.SetUploadFiles(chromedp.CSS("#file-input"), []string{big, small}))
	b.waitFor(60*time.Second, "big.bin received and verified", transferDone("in", "big.bin"), `document.querySelector('#transfers').innerText`)
	b.waitFor(10*time.Second, "the second file received", transferDone("in", "small notes.bin"), `document.querySelector('#transfers').innerText`)
	t.Logf("5 MiB + 0.7 MiB delivered in %v", time.Since(start).Round(time.Millisecond))
	a.waitFor(5*time.Second, "the sender's bar at 100 %", transferDone("out", "big.bin")+` && `+transferDone("out", "small notes.bin"), `document.querySelector('#transfers').innerText`)
	if got := eval[string](b, receivedSHA("big.bin")); got != bigSHA {
		t.Fatalf("big.bin SHA-256 %s, want %s", got, bigSHA)
	}
	if got := eval[string](b, receivedSHA("small notes.bin")); got != smallSHA {
		t.Fatalf("small notes.bin SHA-256 %s, want %s", got, smallSHA)
	}
	b.waitFor(10*time.Second, "size and verification shown", `[...document.querySelectorAll('.transfer[data-direction="in"] .tr-info')].some(i => /100 % · 5.0 MiB of 5.0 MiB.*SHA-256 verified/.test(i.textContent))`,
		`document.querySelector('#transfers').innerText`)
}

// File transfer limits and cancel: a file over the receiver's limit is refused
// on both sides; a cancelled transfer stops on both sides.
func TestFileLimitAndCancel(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.launch("Alice"), e.launch("Bob")
	a.join("limit")
	b.join("limit")
	a.waitFor(15*time.Second, "the file channel open", `[...parleyApp.client.peers.values()].length === 1 && [...parleyApp.client.peers.values()][0].channels.file.readyState === 'open'`)
	b.click("#btn-settings")
	b.waitFor(5*time.Second, "the size limit field", `document.querySelector('#max-file-mb')`)
	eval[bool](b, `(() => { const i = document.querySelector('#max-file-mb'); i.value = '1'; i.dispatchEvent(new Event('change')); return parleyApp.client.maxFileSize === 1048576 })()`)
	b.click("#btn-files")
	a.click("#btn-files")
	p, _ := writeRandomFile(t, "toobig.bin", 2<<20, 3)
	a.do(30*time.Second, chromedp.SetUploadFiles(chromedp.CSS("#file-input"), []string{p}))
	b.waitFor(5*time.Second, "the receiver refusing", `document.querySelector('.transfer[data-direction="in"][data-state="failed"]')`)
	a.waitFor(5*time.Second, "the sender told", `document.querySelector('.transfer[data-direction="out"][data-state="failed"]')`, `document.querySelector('#transfers').innerText`)

	// Cancel: a big transfer cancelled by the receiver stops on both sides.
	eval[bool](b, `(() => { parleyApp.client.maxFileSize = 512 * 1048576; return true })()`)
	p2, _ := writeRandomFile(t, "cancel.bin", 40<<20, 4)
	a.do(30*time.Second, chromedp.SetUploadFiles(chromedp.CSS("#file-input"), []string{p2}))
	b.waitFor(10*time.Second, "the transfer started", `document.querySelector('.transfer[data-direction="in"][data-state="receiving"] .cancel')`)
	b.click(`.transfer[data-direction="in"][data-state="receiving"] .cancel`)
	b.waitFor(10*time.Second, "cancelled here", `[...document.querySelectorAll('.transfer[data-direction="in"]')].some(l => l.dataset.state === 'cancelled')`)
	a.waitFor(10*time.Second, "cancelled at the sender", `[...document.querySelectorAll('.transfer[data-direction="out"]')].some(l => l.dataset.state === 'cancelled')`, `document.querySelector('#transfers').innerText`)
}
