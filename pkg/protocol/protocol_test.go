package protocol

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestDecodeErrors(t *testing.T) {
	cases := map[string]string{
		``:                                       CodeBadJSON,
		`[1]`:                                    CodeBadJSON,
		`{"type":`:                               CodeBadJSON,
		`{}`:                                     CodeMissingField,
		`{"type":"dance"}`:                       CodeUnknownType,
		`{"type":"join"}`:                        CodeMissingField,
		`{"type":"join","room":"a b"}`:           CodeInvalidRoom,
		`{"type":"join","room":5}`:               CodeBadField,
		`{"type":"join","room":"r","mode":"x"}`:  CodeBadField,
		`{"type":"signal","data":1}`:             CodeMissingField,
		`{"type":"signal","to":"x"}`:             CodeMissingField,
		`{"type":"signal","to":"x","data":null}`: CodeMissingField,
		`{"type":"moderate"}`:                    CodeMissingField,
		`{"type":"moderate","action":"ban"}`:     CodeBadField,
		`{"type":"moderate","action":"remove"}`:  CodeMissingField,
		`{"type":"moderate","action":"mute"}`:    CodeMissingField,
		`{"type":"resume"}`:                      CodeMissingField,
		`{"type":"resume","resume":"` + strings.Repeat("a", MaxIDLen+1) + `"}`: CodeBadField,
	}
	for in, want := range cases {
		_, err := Decode([]byte(in))
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != want {
			t.Errorf("%s: got %v, want %s", in, err, want)
		}
	}
	if m, err := Decode([]byte(`{"type":"signal","to":"ab","data":{"sdp":"x"}}`)); err != nil || string(m.Data) != `{"sdp":"x"}` {
		t.Fatalf("signal: %v %s", err, m.Data)
	}
	if m, err := Decode([]byte(`{"type":"moderate","action":"mute","id":"ab","track":"video"}`)); err != nil || m.Action != ActionMute || m.Track != "video" {
		t.Fatalf("moderate: %v %+v", err, m)
	}
	if _, err := Decode([]byte(`{"type":"moderate","action":"end"}`)); err != nil {
		t.Fatalf("end: %v", err)
	}
}

func TestAppendSignalIsValidJSON(t *testing.T) {
	b := AppendSignal(nil, "abc123", []byte(`{"candidate":"x"}`))
	if len(b) != SignalLen("abc123", []byte(`{"candidate":"x"}`)) {
		t.Fatalf("SignalLen %d for %d bytes", SignalLen("abc123", []byte(`{"candidate":"x"}`)), len(b))
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil || m.From != "abc123" || m.Type != TypeSignal {
		t.Fatalf("%s: %v", b, err)
	}
}

func TestDecodeSignal(t *testing.T) {
	for in, ok := range map[string]bool{
		`{"type":"signal","to":"ab12","data":{"sdp":"x"}}`: true,
		`{"type":"signal","to":"*","data":"hi"}`:           true,
		`{"type":"signal","to":"ab","data":null}`:          false,
		`{"type":"signal","to":"ab","data":}`:              false,
		`{"type":"signal","to":"","data":1}`:               false,
		`{"type":"signal","to":"a\u0062","data":1}`:        false,
		`{"type":"signal","to":"ab","data":1,"to":"cd"}`:   false,
		`{"type":"signal","to":"ab","data":{"x":1}`:        false,
		`{"type":"signal","to":"ab","data":1} `:            false,
		`{"type":"signal", "to":"ab","data":1}`:            false,
		`{"type":"signal","to":"ab","data": 1}`:            false,
		`{"type":"signal","to":"ab","data":1 }`:            false,
	} {
		to, data, got := DecodeSignal([]byte(in))
		if got != ok {
			t.Errorf("%s: ok %v, want %v", in, got, ok)
			continue
		}
		if got {
			m, err := Decode([]byte(in))
			if err != nil || m.To != to || string(m.Data) != string(data) {
				t.Errorf("%s: fast path %q %s, Decode %+v %v", in, to, data, m, err)
			}
		}
	}
}

// The fast path never accepts what Decode refuses, nor reads it otherwise.
func FuzzDecodeSignal(f *testing.F) {
	for _, s := range []string{`{"type":"signal","to":"ab12","data":{"sdp":"x"}}`, `{"type":"signal","to":"*","data":[1,2]}`, `{"type":"signal","to":"a","data":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		to, data, ok := DecodeSignal(b)
		if !ok {
			return
		}
		m, err := Decode(b)
		if err != nil || m.Type != TypeSignal || m.To != to || string(m.Data) != string(data) {
			t.Fatalf("%q: fast path %q %q; Decode %+v %v", b, to, data, m, err)
		}
		if !json.Valid(AppendSignal(nil, "f00d", data)) {
			t.Fatalf("relay form invalid for %q", data)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"type":"join","room":"r","name":"n"}`, `{"type":"signal","to":"a","data":{}}`, `{"type":"leave"}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err == nil && m.Type == TypeJoin && !ValidRoom(m.Room) {
			t.Fatalf("accepted bad room %q", m.Room)
		}
		if err == nil && m.Type == TypeSignal {
			// What we relay must stay valid JSON.
			if !json.Valid(AppendSignal(nil, "f00d", m.Data)) {
				t.Fatalf("relay form invalid for %q", m.Data)
			}
		}
	})
}

// TestValidRoom: the loop agrees with the rule as a regexp.
func TestValidRoom(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	for _, s := range []string{"", "a", "A-z_0.9", strings.Repeat("a", 64), strings.Repeat("a", 65), "a b", "é", "a/b", "a\x00", "..", "-"} {
		if got, want := ValidRoom(s), re.MatchString(s); got != want {
			t.Errorf("ValidRoom(%q) = %v, want %v", s, got, want)
		}
	}
}
