package sfu

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestRewriteData(t *testing.T) {
	to, out, err := rewriteData("aaaaaaaaaaaaaaaa", []byte(`{"type":"chat","text":"hi","to":"bbbbbbbbbbbbbbbb","from":"forged"}`), true)
	if err != nil || to != "bbbbbbbbbbbbbbbb" {
		t.Fatalf("text: %q %v", to, err)
	}
	var m map[string]string
	json.Unmarshal(out, &m)
	if m["from"] != "aaaaaaaaaaaaaaaa" || m["text"] != "hi" || m["to"] != "" {
		t.Fatalf("rewritten: %s", out)
	}
	to, out, err = rewriteData("aaaaaaaaaaaaaaaa", append([]byte("****************"), 1, 2, 3), false)
	if err != nil || to != "" || string(out[:16]) != "aaaaaaaaaaaaaaaa" || len(out) != 19 {
		t.Fatalf("binary broadcast: %q %q %v", to, out, err)
	}
	to, _, _ = rewriteData("aaaaaaaaaaaaaaaa", append([]byte("cccccccccccccccc"), 9), false)
	if to != "cccccccccccccccc" {
		t.Fatalf("binary to: %q", to)
	}
	for _, bad := range []struct {
		b    string
		text bool
	}{{"not json", true}, {`[1]`, true}, {`{"to":5}`, true}, {"short", false}} {
		if _, _, err := rewriteData("a", []byte(bad.b), bad.text); !errors.Is(err, errBadDataMessage) {
			t.Errorf("%q accepted: %v", bad.b, err)
		}
	}
}

func FuzzRewriteData(f *testing.F) {
	f.Add([]byte(`{"to":"x","a":1}`), true)
	f.Add([]byte("****************abc"), false)
	f.Fuzz(func(t *testing.T, b []byte, text bool) {
		_, out, err := rewriteData("0123456789abcdef", b, text)
		if err == nil && text && !json.Valid(out) {
			t.Fatalf("invalid JSON out of %q", b)
		}
	})
}
