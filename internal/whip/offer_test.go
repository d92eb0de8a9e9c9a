package whip

import (
	"errors"
	"testing"

	"github.com/parley/parley/internal/sfu"
)

func FuzzCheckOffer(f *testing.F) {
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n", true)
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\n", false)
	f.Add("v=0\r\nm=video 0 X 49\r\na=rtpmap:49 H265/90000\r\n", true)
	f.Fuzz(func(t *testing.T, offer string, publish bool) {
		info, err := CheckOffer(offer, publish)
		if err == nil {
			if info == nil || (publish && info.Sending == 0) || (!publish && info.Receiving == 0) {
				t.Fatalf("accepted offer without usable media: %+v", info)
			}
			return
		}
		var ce *sfu.CodecError
		if !errors.Is(err, sfu.ErrBadOffer) && !errors.As(err, &ce) {
			t.Fatalf("unclassified error %T: %v", err, err)
		}
	})
}

func TestMountPrefix(t *testing.T) {
	for path, want := range map[string]string{"/whip/a": "", "/api/v1/whep/a": "/api/v1", "/x": ""} {
		if got := mountPrefix(path); got != want {
			t.Errorf("mountPrefix(%q) = %q, want %q", path, got, want)
		}
	}
}
