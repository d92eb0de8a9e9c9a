package push

import (
	"net/url"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for raw, ok := range map[string]bool{
		"rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl": true,
		"rtmps://live.twitch.tv:443/app/live_123_abc":    true,
		"rtmp://h:1935/live/s?token=eyJ":                 true,
		"rtmp://h/a/b/key":                               true,
		"srt://h:9000?streamid=publish:s":                true,
		"srt://h:9000":                                   true,
		"srt://h:9000?mode=caller&latency=200":           true,
		"":                                               false,
		"http://h/live/s":                                false,
		"rtmp://h/live":                                  false,
		"rtmp://h/live/":                                 false,
		"rtmp:///live/s":                                 false,
		"rtmp://h:0/live/s":                              false,
		"rtmp://h:99999/live/s":                          false,
		"rtmp://h/live/s#frag":                           false,
		"srt://h?streamid=x":                             false,
		"srt://h:9000/path":                              false,
		"srt://h:9000?mode=listener":                     false,
		"rtmp://h/live/s k":                              false,
		"rtmp://h/live/" + strings.Repeat("k", MaxURL):   false,
		"rtmp:opaque":                                    false,
	} {
		if err := Check(raw); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
	u, _ := url.Parse("rtmp://u:p@h:1935/app/inst/key?token=x")
	tg := rtmpTarget(u)
	if tg.Path != "/app/inst" || tg.Fragment != "key?token=x" || tg.Host != "h:1935" {
		t.Fatalf("target %+v", tg)
	}
}

// FuzzCheck: Check never panics, never quotes the URL in its error, and
// what it accepts is an rtmp(s) URL with an app and a key, or an srt
// caller URL with a port, within MaxURL.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"rtmp://a.rtmp.youtube.com/live2/abcd", "rtmps://h:443/app/k?x=y", "srt://h:9000?streamid=publish:s:tok",
		"srt://h:9000?mode=listener", "rtmp://u:pw@h/a/b", "rtmp://h/%zz/k", "srt://[::1]:9000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := parse(raw)
		if err != nil {
			if len(raw) > 8 && strings.Contains(err.Error(), raw) {
				t.Fatalf("error quotes the url: %v", err)
			}
			return
		}
		if len(raw) > MaxURL || u.Hostname() == "" {
			t.Fatalf("accepted %q", raw)
		}
		switch u.Scheme {
		case "srt":
			if u.Port() == "" {
				t.Fatalf("srt without port accepted: %q", raw)
			}
		case "rtmp", "rtmps":
			tg := rtmpTarget(u)
			if tg.Fragment == "" || tg.Path == "/" {
				t.Fatalf("%q: no app or key in %+v", raw, tg)
			}
		default:
			t.Fatalf("scheme %q accepted", u.Scheme)
		}
	})
}
