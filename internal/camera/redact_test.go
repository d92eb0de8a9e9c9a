package camera

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzRedact: a redacted URL shows no password (its password reads back
// as xxxxx), and an error text quoting the password loses it.
func FuzzRedact(f *testing.F) {
	f.Add("rtsp://admin:s3cret@cam/stream1", "dial rtsp://admin:s3cret@cam/stream1: refused")
	f.Add("rtsp://cam/s", "timeout")
	f.Add("rtsp://a:p%40ss@cam/s", "p%40ss p@ss")
	f.Fuzz(func(t *testing.T, raw, msg string) {
		got := Redact(raw)
		u, err := url.Parse(raw)
		if err != nil {
			if got != "(not a URL)" {
				t.Fatalf("unparsable %q shown as %q", raw, got)
			}
			return
		}
		p, ok := u.User.Password()
		if !ok || p == "" {
			return
		}
		if back, err := url.Parse(got); err != nil || back.User == nil {
			t.Fatalf("%q redacted as %q", raw, got)
		} else if bp, _ := back.User.Password(); bp != "xxxxx" {
			t.Fatalf("%q redacted as %q (password %q)", raw, got, bp)
		}
		if out := redactErr(msg+p, raw); strings.Contains(out, p) && !strings.Contains("xxxxx", p) {
			t.Fatalf("password %q left in %q", p, out)
		}
	})
}

// TestTicks: clock units become durations, also days into a stream.
func TestTicks(t *testing.T) {
	for _, c := range []struct {
		t     int64
		clock int
		want  time.Duration
	}{{90000, 90000, time.Second}, {45, 90000, 500 * time.Microsecond}, {90000 * 86400 * 3, 90000, 72 * time.Hour}, {48000*200000 + 480, 48000, 200000*time.Second + 10*time.Millisecond}} {
		if got := ticks(c.t, c.clock); got != c.want {
			t.Errorf("ticks(%d, %d) = %v, want %v", c.t, c.clock, got, c.want)
		}
	}
}

// TestReasonHidesAddress: a network error the reasons do not name is
// shown without the camera's address.
func TestReasonHidesAddress(t *testing.T) {
	err := fmt.Errorf("DESCRIBE: %w", &net.OpError{Op: "read", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 554}, Err: errors.New("something odd")})
	if got := Reason(err, "rtsp://10.1.2.3/s"); got != "network error: something odd" {
		t.Fatalf("%q", got)
	}
}
