package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The browser tests read what a person sees and the client library's public
// API, nothing of a page's own state (issue #13). A page exposes one global,
// window.parleyApp, holding only library objects: the call page's Client
// (client), the WHIP/WHEP Session of the broadcast, watch and light-show
// pages (session), the watch page's HLS playback (hls), and the light-show
// host's toneBurst instrument for the latency benchmark
// (docs/client-js.md, "Page hooks"). Of the Client and its SfuLink only the
// documented members are used. This test fails when a test file reaches for
// anything else, so that it does not creep back.
func TestBrowserTestsUsePublicAPI(t *testing.T) {
	// Documented in docs/client-js.md ("Properties", "Methods", "SFU rooms");
	// tsc enforces the @private rest for the pages.
	clientPublic := []string{
		"addEventListener", "removeEventListener", "state", "id", "name", "room", "mode", "transport", "peers", "link",
		"iceServers", "identity", "verified", "host", "grants", "localStream", "mediaState", "maxBitrate", "maxFileSize",
		"join", "leave", "reconnectNow", "setTrack", "setMediaState", "setMaxBitrate", "chat", "sendControl", "send", "sendFile",
		"maySend", "rebuildLink", "removeMember", "muteMember", "endRoom",
	}
	linkPublic := []string{"pc", "connectionState", "tracks", "prefer"}
	appPublic := []string{"client", "session", "hls", "toneBurst"}

	private := libPrivateNames(t)
	member := regexp.MustCompile(`\.\s*([a-z]\w*[A-Z]\w*)\b`)

	global := regexp.MustCompile(`\bparley[A-Z]\w*`)
	appMember := regexp.MustCompile(`\bparleyApp\s*\.\s*(\w+)`)
	clientMember := regexp.MustCompile(`\bparleyApp\.client\s*\.\s*(\w+)(?:\s*\.\s*(\w+))?`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f == "publicapi_test.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			at := func(format string, args ...any) {
				t.Helper()
				t.Errorf("%s:%d: "+format+": %s", append(append([]any{f, i + 1}, args...), strings.TrimSpace(line))...)
			}
			for _, g := range global.FindAllString(line, -1) {
				if g != "parleyApp" {
					at("window.%s is a page's own state, not public API (use what the page shows, or window.parleyApp's library objects)", g)
				}
			}
			for _, m := range appMember.FindAllStringSubmatch(line, -1) {
				if !slices.Contains(appPublic, m[1]) {
					at("parleyApp.%s is not one of the page's library objects %v", m[1], appPublic)
				}
			}
			// Reached through a local variable (const c = parleyApp.client;
			// c.onServerMessage): any member the library marks @private.
			for _, m := range member.FindAllStringSubmatch(line, -1) {
				if private[m[1]] {
					at("%s is @private in the client library (web/static/lib), not public API", m[1])
				}
			}
			for _, m := range clientMember.FindAllStringSubmatch(line, -1) {
				if !slices.Contains(clientPublic, m[1]) {
					at("Client.%s is not public API (docs/client-js.md)", m[1])
				}
				if m[1] == "link" && m[2] != "" && !slices.Contains(linkPublic, m[2]) {
					at("SfuLink.%s is not public API (public: %v)", m[2], linkPublic)
				}
			}
		}
	}
}

// libPrivateNames returns the camelCase names of the client library's
// members marked @private (web/static/lib/*.js): a method or a this.x
// field after a JSDoc block with @private, or /** @private */ this.x on
// one line. Short lowercase names (pc, sig, closed) are left out: they are
// also common words in Go code and public members elsewhere.
func libPrivateNames(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../../web/static/lib/*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("the client library's files: %v (%d found)", err, len(files))
	}
	inline := regexp.MustCompile(`@private\s*\*/\s*this\.(\w+)`)
	def := regexp.MustCompile(`^(?:(?:async|static|get|set)\s+)*(\w+)\s*\(|^this\.(\w+)\s*=|^(\w+)\s*[=;]`)
	camel := regexp.MustCompile(`^[a-z]\w*[A-Z]`)
	names := map[string]bool{}
	add := func(n string) {
		if camel.MatchString(n) {
			names[n] = true
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i, l := range lines {
			if !strings.Contains(l, "@private") {
				continue
			}
			if m := inline.FindStringSubmatch(l); m != nil {
				add(m[1])
				continue
			}
			for _, next := range lines[i+1:] {
				next = strings.TrimSpace(next)
				if next == "" || strings.HasPrefix(next, "*") || strings.HasPrefix(next, "/**") {
					continue
				}
				if m := def.FindStringSubmatch(next); m != nil {
					add(m[1] + m[2] + m[3])
				}
				break
			}
		}
	}
	if !names["onServerMessage"] {
		t.Fatalf("found %d @private names in the client library, not onServerMessage: the pattern no longer matches its JSDoc", len(names))
	}
	return names
}
