package origin

import (
	"net/url"
	"strings"
	"testing"
)

func TestAllowed(t *testing.T) {
	p := New([]string{"parley.example.com", "203.0.113.9:8080", "[2001:db8::1]:443"}, []string{"*.partner.example", "https://app.example"})
	for o, want := range map[string]bool{
		"":                             true,
		"http://127.0.0.1:8080":        true,
		"http://localhost:5000":        true,
		"http://[::1]:8080":            true,
		"https://parley.example.com":   true,
		"https://PARLEY.example.com.":  true,
		"http://203.0.113.9:9999":      true,
		"https://[2001:db8::1]":        true,
		"https://a.partner.example":    true,
		"https://app.example":          true,
		"http://app.example":           false, // the pattern names the scheme
		"http://evil.example":          false, // DNS rebinding: Host would say evil.example too
		"null":                         false,
		"file://":                      false,
		"chrome-extension://abc":       false,
		"https://partner.example.evil": false,
	} {
		if got := p.Allowed(o); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", o, got, want)
		}
	}
}

func FuzzAllowed(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:1", "https://evil.example", "http://[::1", "https://x.partner.example:9"} {
		f.Add(s)
	}
	p := New([]string{"parley.example.com"}, []string{"*.partner.example"})
	f.Fuzz(func(t *testing.T, o string) {
		if !p.Allowed(o) || o == "" {
			return
		}
		u, err := url.Parse(o)
		if err != nil {
			t.Fatalf("allowed an unparseable origin %q", o)
		}
		h := strings.ToLower(u.Hostname())
		h = strings.TrimSuffix(h, ".")
		if h != "parley.example.com" && h != "localhost" && h != "127.0.0.1" && h != "::1" && !strings.HasSuffix(strings.ToLower(u.Host), ".partner.example") && !strings.Contains(strings.ToLower(u.Host), ".partner.example") {
			t.Fatalf("allowed %q (host %q), which is none of the server's names or patterns", o, h)
		}
	})
}
