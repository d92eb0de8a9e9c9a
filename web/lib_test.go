package web

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// The pages reach the server only through the client library, and only
// through its public API: what parley.js re-exports. Every module is
// type-checked (// @ts-check; tsc runs in scripts/test.sh).
func TestPagesUseTheLibrary(t *testing.T) {
	read := func(p string) string {
		b, err := fs.ReadFile(static, p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	entry := read("static/parley.js")
	public := map[string]map[string]bool{} // lib module -> names parley.js re-exports from it
	reexport := regexp.MustCompile(`(?m)^export \{([^}]*)\} from '\./(lib/[a-z-]+\.js)';`)
	for _, m := range reexport.FindAllStringSubmatch(entry, -1) {
		if public[m[2]] == nil {
			public[m[2]] = map[string]bool{}
		}
		for _, n := range strings.Split(m[1], ",") {
			public[m[2]][strings.TrimSpace(n)] = true
			public["parley.js"] = merge(public["parley.js"], strings.TrimSpace(n))
		}
	}
	if len(public) < 5 {
		t.Fatalf("parley.js re-exports from %d modules; its export lines changed shape?", len(public))
	}

	imp := regexp.MustCompile(`(?m)^import \{([^}]*)\} from '\.\./((?:lib/)?[a-z-]+\.js)';`)
	// Network access belongs in lib/.
	network := regexp.MustCompile(`new WebSocket\(|new RTCPeerConnection\(|new EventSource\(|\bfetch\(`)

	var files []string
	for _, dir := range []string{"static/app", "static/lib"} {
		ents, err := fs.ReadDir(static, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".js") {
				files = append(files, dir+"/"+e.Name())
			}
		}
	}
	files = append(files, "static/parley.js")
	for _, f := range files {
		body := read(f)
		if !strings.HasPrefix(body, "// @ts-check\n") {
			t.Errorf("%s: does not start with // @ts-check", f)
		}
		if !strings.HasPrefix(f, "static/app/") {
			continue
		}
		for _, m := range imp.FindAllStringSubmatch(body, -1) {
			for _, n := range strings.Split(m[1], ",") {
				n = strings.TrimSpace(strings.Split(strings.TrimSpace(n), " as ")[0])
				if !public[m[2]][n] {
					t.Errorf("%s imports %s from %s, which parley.js does not export from there (not public API)", f, n, m[2])
				}
			}
		}
		for _, line := range strings.Split(body, "\n") {
			if network.MatchString(line) {
				t.Errorf("%s: %q: pages reach the server through the library (web/static/lib)", f, strings.TrimSpace(line))
			}
		}
	}
}

// Every file a page preloads exists (a moved module leaves no dangling
// modulepreload behind).
func TestPreloadsExist(t *testing.T) {
	pages, err := fs.Glob(static, "static/*.html")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages: %v", err)
	}
	preload := regexp.MustCompile(`<link rel="modulepreload" href="([^"]+)">`)
	for _, p := range pages {
		b, err := fs.ReadFile(static, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range preload.FindAllStringSubmatch(string(b), -1) {
			if _, err := fs.Stat(static, "static"+m[1]); err != nil {
				t.Errorf("%s preloads %s: %v", p, m[1], err)
			}
		}
	}
}

func merge(set map[string]bool, name string) map[string]bool {
	if set == nil {
		set = map[string]bool{}
	}
	set[name] = true
	return set
}
