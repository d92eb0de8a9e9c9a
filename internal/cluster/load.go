package cluster

import (
	"runtime"
	"time"
)

// loadMeter turns the node's counters into rates between heartbeats.
// Only the registration goroutine uses it.
type loadMeter struct {
	read   func() Counters
	at     time.Time
	cpu    time.Duration // process CPU time at at
	egress uint64
}

func (l *loadMeter) start(read func() Counters) {
	l.read = read
	l.at, l.cpu = time.Now(), processCPU()
	if read != nil {
		l.egress = read().EgressBytes
	}
}

// sample is the load since the last sample.
func (l *loadMeter) sample() Load {
	now, cpu := time.Now(), processCPU()
	var out Load
	if wall := now.Sub(l.at); wall > 0 {
		out.CPU = float64(cpu-l.cpu) / float64(wall) / float64(runtime.NumCPU())
		if l.read != nil {
			c := l.read()
			out.Sessions = c.Sessions
			if c.EgressBytes >= l.egress {
				out.EgressBits = uint64(float64(c.EgressBytes-l.egress) * 8 / wall.Seconds())
			}
			l.egress = c.EgressBytes
		}
	}
	l.at, l.cpu = now, cpu
	return out
}
