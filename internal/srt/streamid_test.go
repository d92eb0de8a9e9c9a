package srt

import (
	"strings"
	"testing"

	"github.com/parley/parley/internal/ingest"
	"github.com/parley/parley/pkg/protocol"
)

func TestParseStreamID(t *testing.T) {
	for _, c := range []struct {
		in   string
		want StreamID // zero: an error
	}{
		{"publish:s", StreamID{ingest.Publish, "s", ""}},
		{"read:cam-1.a_b", StreamID{ingest.Read, "cam-1.a_b", ""}},
		{"publish:s:eyJ.a.b", StreamID{ingest.Publish, "s", "eyJ.a.b"}},
		{"read:s:tok", StreamID{ingest.Read, "s", "tok"}},
		{"#!::r=s,m=publish,t=tok", StreamID{ingest.Publish, "s", "tok"}},
		{"#!::m=request,r=s", StreamID{ingest.Read, "s", ""}},
		{"#!::r=s", StreamID{ingest.Read, "s", ""}},
		{"#!::u=me,r=s,s=123,h=example.com,m=publish", StreamID{ingest.Publish, "s", ""}},
		{"%23!::r=s,m=publish", StreamID{ingest.Publish, "s", ""}},
		{"publish%3As", StreamID{ingest.Publish, "s", ""}},
		{"", StreamID{}},
		{"s", StreamID{}},
		{"publish", StreamID{}},
		{"publish:", StreamID{}},
		{"write:s", StreamID{}},
		{"publish:a/b", StreamID{}},
		{"publish:s:a:b", StreamID{}},
		{"publish:" + strings.Repeat("x", 65), StreamID{}},
		{"#!::m=publish", StreamID{}},
		{"#!::r=s,m=sideways", StreamID{}},
		{"#!::r=s,r=t", StreamID{}},
		{"#!::r=s,x=1", StreamID{}},
		{"#!::r", StreamID{}},
		{"%zz", StreamID{}},
		{strings.Repeat("x", 600), StreamID{}},
	} {
		got, err := ParseStreamID(c.in, protocol.ValidRoom)
		if c.want == (StreamID{}) {
			if err == nil {
				t.Errorf("%q: %+v, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

// FuzzParseStreamID: any streamid parses or errors; what parses is a valid
// stream with a known action and a token without separators.
func FuzzParseStreamID(f *testing.F) {
	for _, s := range []string{"publish:s", "read:s:tok", "#!::r=s,m=publish,t=x", "#!::u=a,r=b", "%23!::r=s", "publish:s:a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseStreamID(s, protocol.ValidRoom)
		if err != nil {
			return
		}
		if !protocol.ValidRoom(id.Stream) || (id.Action != ingest.Publish && id.Action != ingest.Read) {
			t.Fatalf("%q: %+v", s, id)
		}
	})
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"publish:s":                  "publish:s",
		"publish:s:secret":           "publish:s:…",
		"#!::r=s,m=publish,t=secret": "#!::r=s,m=publish,t=…",
		"#!::t=secret,r=s":           "#!::t=…",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
