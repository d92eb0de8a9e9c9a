package camera

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

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
