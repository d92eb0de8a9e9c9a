package protocol

import (
	"encoding/json"
	"errors"
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
	var m Message
	if err := json.Unmarshal(b, &m); err != nil || m.From != "abc123" || m.Type != TypeSignal {
		t.Fatalf("%s: %v", b, err)
	}
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
