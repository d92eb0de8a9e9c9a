package show

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	long := `"` + strings.Repeat("x", maxText+1) + `"`
	tests := []struct {
		name string
		role Role
		in   string
		ok   bool
	}{
		{"level", RoleScreen, `{"type":"level","value":128}`, true},
		{"level zero", RoleScreen, `{"type":"level","value":0}`, true},
		{"level missing value", RoleScreen, `{"type":"level"}`, false},
		{"level too high", RoleScreen, `{"type":"level","value":256}`, false},
		{"level negative", RoleScreen, `{"type":"level","value":-1}`, false},
		{"level fraction", RoleScreen, `{"type":"level","value":1.5}`, false},
		{"screen may not set mode", RoleScreen, `{"type":"mode","palette":"hue"}`, false},
		{"host may not send level", RoleHost, `{"type":"level","value":3}`, false},
		{"no type", RoleHost, `{"palette":"hue"}`, false},
		{"unknown type", RoleHost, `{"type":"dance"}`, false},
		{"unknown field", RoleHost, `{"type":"mode","palette":"hue","x":1}`, false},
		{"not json", RoleHost, `hello`, false},
		{"array", RoleHost, `[1,2]`, false},
		{"trailing", RoleHost, `{"type":"mode","palette":"hue"} {}`, false},
		{"mode", RoleHost, `{"type":"mode","palette":"hue"}`, true},
		{"mode all", RoleHost, `{"type":"mode","palette":"mono","color":"#0f0","gain":2.5}`, true},
		{"mode empty", RoleHost, `{"type":"mode"}`, false},
		{"mode bad palette", RoleHost, `{"type":"mode","palette":"disco"}`, false},
		{"mode bad colour", RoleHost, `{"type":"mode","color":"red"}`, false},
		{"mode gain too big", RoleHost, `{"type":"mode","gain":11}`, false},
		{"flash", RoleHost, `{"type":"flash","color":"#ff0000","ms":500}`, true},
		{"flash default", RoleHost, `{"type":"flash"}`, true},
		{"flash too long", RoleHost, `{"type":"flash","ms":10001}`, false},
		{"flash bad colour", RoleHost, `{"type":"flash","color":"#ff00"}`, false},
		{"text", RoleHost, `{"type":"text","text":"Hello wall 👋"}`, true},
		{"text clear", RoleHost, `{"type":"text","text":""}`, true},
		{"text missing", RoleHost, `{"type":"text"}`, false},
		{"text too long", RoleHost, `{"type":"text","text":` + long + `}`, false},
		{"text control char", RoleHost, `{"type":"text","text":"a\u0007b"}`, false},
		{"assign band", RoleHost, `{"type":"assign","screen":"s1","band":[800,16000]}`, true},
		{"assign label", RoleHost, `{"type":"assign","screen":"s1","label":"R1C2"}`, true},
		{"assign nothing", RoleHost, `{"type":"assign","screen":"s1"}`, false},
		{"assign no screen", RoleHost, `{"type":"assign","band":[1,2]}`, false},
		{"assign reversed band", RoleHost, `{"type":"assign","screen":"s1","band":[900,800]}`, false},
		{"assign band too high", RoleHost, `{"type":"assign","screen":"s1","band":[800,30000]}`, false},
		{"assign band short", RoleHost, `{"type":"assign","screen":"s1","band":[800]}`, false},
		{"assign band long", RoleHost, `{"type":"assign","screen":"s1","band":[800,900,1000]}`, false},
		{"assign empty label", RoleHost, `{"type":"assign","screen":"s1","label":"  "}`, false},
		{"layout order", RoleHost, `{"type":"layout","order":["s2","s1"]}`, true},
		{"layout auto", RoleHost, `{"type":"layout","auto":true}`, true},
		{"layout both", RoleHost, `{"type":"layout","auto":true,"order":["s1"]}`, false},
		{"layout neither", RoleHost, `{"type":"layout"}`, false},
		{"layout duplicate", RoleHost, `{"type":"layout","order":["s1","s1"]}`, false},
		{"layout bad id", RoleHost, `{"type":"layout","order":["s 1"]}`, false},
		{"too large", RoleHost, `{"type":"text","text":"` + strings.Repeat("a", MaxMessage) + `"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode([]byte(tc.in), tc.role)
			if tc.ok && err != nil {
				t.Fatalf("Decode(%s) = %v", tc.in, err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatalf("Decode(%s) = %+v, want an error", tc.in, m)
				}
				if !errors.Is(err, ErrBadMessage) {
					t.Fatalf("error %v does not wrap ErrBadMessage", err)
				}
			}
		})
	}
}

func TestDecodeDefaults(t *testing.T) {
	m, err := Decode([]byte(`{"type":"flash"}`), RoleHost)
	if err != nil || m.Color != "#ffffff" || m.MS != defFlashMS {
		t.Fatalf("flash defaults: %+v %v", m, err)
	}
}

func TestDecodeBroadcast(t *testing.T) {
	tests := []struct {
		in    string
		types []string
	}{
		{`{"mode":"hue"}`, []string{TypeMode}},
		{`{"flash":"#ff0000","ms":500}`, []string{TypeFlash}},
		{`{"text":"Hello"}`, []string{TypeText}},
		{`{"text":""}`, []string{TypeText}},
		{`{"mode":"mono","color":"#00f","gain":2,"flash":"#fff","text":"Hi"}`, []string{TypeMode, TypeFlash, TypeText}},
		{`{}`, nil},
		{`{"mode":"disco"}`, nil},
		{`{"ms":500}`, nil},
		{`{"flash":"red"}`, nil},
		{`{"flash":"#fff","ms":5}`, nil},
		{`{"type":"flash"}`, nil},
		{`{"mode":"hue"`, nil},
		{``, nil},
		{`null`, nil},
		{`"hue"`, nil},
	}
	for _, tc := range tests {
		ms, err := DecodeBroadcast([]byte(tc.in))
		if tc.types == nil {
			if err == nil {
				t.Errorf("DecodeBroadcast(%s) = %+v, want an error", tc.in, ms)
			}
			continue
		}
		if err != nil {
			t.Errorf("DecodeBroadcast(%s): %v", tc.in, err)
			continue
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.Type)
		}
		if strings.Join(got, ",") != strings.Join(tc.types, ",") {
			t.Errorf("DecodeBroadcast(%s) types %v, want %v", tc.in, got, tc.types)
		}
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{"party": true, "a": true, "x.y_z-1": true, "": false, "a b": false,
		"a/b": false, strings.Repeat("a", 59): true, strings.Repeat("a", 60): false, "ünï": false} {
		if ValidName(s) != want {
			t.Errorf("ValidName(%q) = %v", s, !want)
		}
	}
	if got := StreamName("party"); got != "show-party" {
		t.Errorf("StreamName = %q", got)
	}
}

// FuzzDecodeMessage: the decoder never panics, and whatever it accepts
// is a valid message of a type the role may send.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{`{"type":"level","value":128}`, `{"type":"mode","palette":"hue","gain":2}`,
		`{"type":"assign","screen":"s1","band":[800,16000],"label":"R1"}`, `{"type":"layout","order":["s2","s1"]}`,
		`{"type":"flash","color":"#fff","ms":300}`, `{"type":"text","text":"hi"}`, `{"type":"layout","auto":true}`,
		`{"type":"assign","screen":"s1","band":[1e308,-1e308]}`, `{`, `null`, ``} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, host bool) {
		role := RoleScreen
		if host {
			role = RoleHost
		}
		m, err := Decode(data, role)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error does not wrap ErrBadMessage: %v", err)
			}
			return
		}
		if !allowed[role][m.Type] {
			t.Fatalf("accepted %q from %s", m.Type, role)
		}
		if err := m.validate(); err != nil {
			t.Fatalf("accepted message fails validation: %v", err)
		}
		if m.Band != nil && !m.Band.valid() {
			t.Fatalf("accepted band %v", *m.Band)
		}
		_ = mustJSON(m) // accepted messages re-encode
		if _, err := DecodeBroadcast(data); err != nil && !errors.Is(err, ErrBadMessage) {
			t.Fatalf("broadcast error does not wrap ErrBadMessage: %v", err)
		}
	})
}
