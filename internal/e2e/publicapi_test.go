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
