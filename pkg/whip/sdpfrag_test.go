package whip

import (
	"errors"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

const rfcFrag = "a=ice-options:trickle ice2\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"m=audio 9 RTP/AVP 0\r\n" +
	"a=mid:0\r\n" +
	"a=ice-ufrag:EsAw\r\n" +
	"a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n" +
	"a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n" +
	"a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n" +
	"a=end-of-candidates\r\n"

func TestParseSDPFrag(t *testing.T) {
	f, err := ParseSDPFrag(rfcFrag)
	if err != nil {
		t.Fatal(err)
	}
	if f.ICEUfrag != "EsAw" || f.ICEPwd != "P2uYro0UCOQ4zxjKXaWCBui1" || len(f.Media) != 1 {
		t.Fatalf("%+v", f)
	}
	m := f.Media[0]
	if m.Mid != "0" || len(m.Candidates) != 2 || !m.EndOfCandidates || !strings.HasPrefix(m.Candidates[0], "1387637174 1 udp") {
		t.Fatalf("%+v", m)
	}
	g, err := ParseSDPFrag(f.String())
	if err != nil || g.ICEUfrag != f.ICEUfrag || len(g.Media[0].Candidates) != 2 {
		t.Fatalf("round trip: %+v %v", g, err)
	}

	bad := map[string]string{
		"not sdp":            "hello world",
		"candidate no media": "a=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\n",
		"short candidate":    "m=audio 9 RTP/AVP 0\r\na=candidate:1 1 udp\r\n",
		"ufrag without pwd":  "a=ice-ufrag:abc\r\n",
		"empty ufrag":        "a=ice-ufrag:\r\na=ice-pwd:x\r\n",
		"mid outside media":  "a=mid:0\r\n",
	}
	for name, body := range bad {
		if _, err := ParseSDPFrag(body); !errors.Is(err, ErrFrag) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if f, err := ParseSDPFrag("m=video 9 X 96\na=mid:1\na=end-of-candidates\n"); err != nil || f.Media[0].Mid != "1" {
		t.Errorf("LF line ends: %+v %v", f, err)
	}
}

func TestLinkHeaders(t *testing.T) {
	got := LinkHeaders([]webrtc.ICEServer{
		{URLs: []string{"stun:stun.example.net"}},
		{URLs: []string{"turn:turn.example.net?transport=udp", "turns:turn.example.net:443"}, Username: "u", Credential: "p"},
	})
	want := []string{
		`<stun:stun.example.net>; rel="ice-server"`,
		`<turn:turn.example.net?transport=udp>; rel="ice-server"; username="u"; credential="p"; credential-type="password"`,
		`<turns:turn.example.net:443>; rel="ice-server"; username="u"; credential="p"; credential-type="password"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s", strings.Join(got, "\n"))
	}
}

func FuzzParseSDPFrag(f *testing.F) {
	f.Add(rfcFrag)
	f.Add("a=ice-ufrag:a\na=ice-pwd:b\n")
	f.Add("m=video 9 X 96\r\na=mid:0\r\na=end-of-candidates")
	f.Fuzz(func(t *testing.T, body string) {
		fr, err := ParseSDPFrag(body)
		if err != nil {
			return
		}
		// What parses must survive a round trip with the same credentials
		// and candidates.
		g, err := ParseSDPFrag(fr.String())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", fr.String(), err)
		}
		if g.ICEUfrag != fr.ICEUfrag || g.ICEPwd != fr.ICEPwd || len(g.Media) != len(fr.Media) {
			t.Fatalf("round trip changed %+v into %+v", fr, g)
		}
	})
}
