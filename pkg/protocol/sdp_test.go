package protocol

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestSDPDeflate(t *testing.T) {
	text := "v=0\r\n" + strings.Repeat("a=rtcp-fb:96 nack pli\r\n", 500)
	z := DeflateSDP("offer", text)
	if z.SDP != "" || z.Type != "offer" || len(z.Deflate) >= len(text)/10 {
		t.Fatalf("compact form: %d bytes for %d", len(z.Deflate), len(text))
	}
	if got, err := z.Text(); err != nil || got != text {
		t.Fatalf("inflated to %d bytes, %v", len(got), err)
	}
	if got, err := (SDP{Type: "answer", SDP: "v=0\r\n"}).Text(); err != nil || got != "v=0\r\n" {
		t.Fatalf("plain: %q %v", got, err)
	}
	if _, err := (SDP{Type: "offer", Deflate: "not base64!"}).Text(); err == nil {
		t.Fatal("bad base64 accepted")
	}
	if _, err := (SDP{Type: "offer", Deflate: base64.StdEncoding.EncodeToString([]byte{0xff, 0xff})}).Text(); err == nil {
		t.Fatal("bad deflate data accepted")
	}
}

func TestSDPDeflateBounded(t *testing.T) {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	w.Write(make([]byte, MaxSDP+1))
	w.Close()
	bomb := SDP{Type: "offer", Deflate: base64.StdEncoding.EncodeToString(b.Bytes())}
	if len(bomb.Deflate) > 64<<10 {
		t.Fatalf("test bomb is %d bytes", len(bomb.Deflate))
	}
	if _, err := bomb.Text(); !errors.Is(err, ErrSDPTooLarge) {
		t.Fatalf("inflating past MaxSDP: %v", err)
	}
}

// FuzzSDPText: whatever a client sends as compact SDP, inflating it never
// panics, never returns more than MaxSDP bytes, and what DeflateSDP makes
// comes back unchanged.
func FuzzSDPText(f *testing.F) {
	f.Add("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n", "")
	f.Add("", "not base64")
	f.Add("", "AAAA")
	f.Fuzz(func(t *testing.T, text, deflate string) {
		if len(text) <= MaxSDP {
			got, err := DeflateSDP("offer", text).Text()
			if err != nil || got != text {
				t.Fatalf("round trip: %q, %v", got, err)
			}
		}
		got, err := SDP{Type: "offer", Deflate: deflate}.Text()
		if err == nil && len(got) > MaxSDP {
			t.Fatalf("inflated to %d bytes", len(got))
		}
	})
}
