package redact

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzRedact: a redacted URL shows no password (it reads back as xxxxx),
// with keys no query value and no RTMP stream key either, and an error
// text quoting a secret loses it.
func FuzzRedact(f *testing.F) {
	f.Add("rtsp://admin:s3cret@cam/stream1", "dial rtsp://admin:s3cret@cam/stream1: refused")
	f.Add("rtsp://cam/s", "timeout")
	f.Add("rtsp://a:p%40ss@cam/s", "p%40ss p@ss")
	f.Add("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl", "publish abcd-efgh-ijkl refused")
	f.Add("srt://h:9000?streamid=publish:s:tok&passphrase=x y", "streamid publish%3As%3Atok")
	f.Fuzz(func(t *testing.T, raw, msg string) {
		got := URL(raw, false)
		u, err := url.Parse(raw)
		if err != nil {
			if got != "(not a URL)" || URL(raw, true) != "(not a URL)" {
				t.Fatalf("unparsable %q shown as %q", raw, got)
			}
			return
		}
		if p, ok := u.User.Password(); ok && p != "" {
			for _, keys := range []bool{false, true} {
				got := URL(raw, keys)
				if back, err := url.Parse(got); err != nil || back.User == nil {
					t.Fatalf("%q redacted as %q", raw, got)
				} else if bp, _ := back.User.Password(); bp != Mask {
					t.Fatalf("%q redacted as %q (password %q)", raw, got, bp)
				}
			}
		}
		shown := URL(raw, true)
		back, err := url.Parse(shown)
		if err != nil {
			t.Fatalf("%q redacted as %q, which does not parse: %v", raw, shown, err)
		}
		for _, v := range back.Query() {
			for _, s := range v {
				if s != Mask {
					t.Fatalf("%q redacted as %q: query value %q", raw, shown, s)
				}
			}
		}
		if k := streamKey(back); k != "" && k != Mask {
			t.Fatalf("%q redacted as %q: stream key %q", raw, shown, k)
		}
		pw, _ := u.User.Password()
		for _, s := range Secrets(raw) {
			if len(s) < minSecret && s != pw {
				continue
			}
			if out := Text(msg+s, raw); strings.Contains(out, s) && !strings.Contains(Mask, s) {
				t.Fatalf("secret %q left in %q", s, out)
			}
		}
	})
}

func TestURL(t *testing.T) {
	for raw, want := range map[string]string{
		"rtmp://a.rtmp.youtube.com/live2/abcd-efgh":         "rtmp://a.rtmp.youtube.com/live2/xxxxx",
		"rtmps://live.twitch.tv:443/app/live_1_x?token=jwt": "rtmps://live.twitch.tv:443/app/xxxxx?token=xxxxx",
		"rtmp://u:pw@h/app":                                 "rtmp://u:xxxxx@h/app",
		"srt://h:9000?streamid=publish:s:tok":               "srt://h:9000?streamid=xxxxx",
	} {
		if got := URL(raw, true); got != want {
			t.Errorf("URL(%q) = %q, want %q", raw, got, want)
		}
	}
	if got := URL("rtsp://u:pw@cam/stream1?x=1", false); got != "rtsp://u:xxxxx@cam/stream1?x=1" {
		t.Errorf("without keys: %q", got)
	}
}
