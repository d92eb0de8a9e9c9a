package turn

import (
	"context"
	"testing"
	"time"

	turnload "github.com/parley/parley/internal/bench/turn"
)

// BenchmarkRelay runs turnload in-process against a server at 50k
// packets/s for 2 s, once per iteration, comparing a single socket with
// OS-default buffers (plain pion/turn) to the default socket group. The
// CPU figure covers the whole process, generator included; cmd/turnbench
// measures the server alone.
func BenchmarkRelay(b *testing.B) {
	setups := []struct {
		name string
		mod  func(*Config)
	}{
		{"single-socket-default-buffers", func(c *Config) { c.Sockets = 1; c.SocketBuffer = -1 }},
		{"reuseport-group", func(c *Config) { c.Sockets = 0 }},
	}
	for _, st := range setups {
		b.Run(st.name, func(b *testing.B) {
			cfg := Config{Listen: "127.0.0.1:0", Secret: testSecret, AllowPeers: loopback4, Logger: testLogger(), Quota: 1000}
			st.mod(&cfg)
			srv, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			for b.Loop() {
				res, err := turnload.Run(context.Background(), turnload.Options{
					Server: srv.UDPAddr().String(), Secret: string(testSecret),
					Rate: 50000, Duration: 2 * time.Second,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.LossPercent, "loss%")
				b.ReportMetric(res.RelayedPPS, "relayed-pps")
				b.ReportMetric(res.CPUPerMillion, "cpu-s/Mpkt")
			}
		})
	}
}
