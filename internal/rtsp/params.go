package rtsp

import (
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/parley/parley/internal/sfu"
)

// paramsWait bounds how long a DESCRIBE waits for an H.264 track's SPS
// and PPS when the SFU has no keyframe cached; the description goes out
// without them after it (players then take them in-band).
const paramsWait = 2 * time.Second

// h264Params reads the SPS and PPS in front of a track's keyframe: a
// subscription starts on one (replayed from the cache when there is one),
// so they come at once for a track that has had a recent keyframe.
func (s *Server) h264Params(room *sfu.Room, trackID string) (sps, pps []byte) {
	k := &paramSink{done: make(chan struct{})}
	sub, err := room.Subscribe(trackID, k, sfu.SinkOptions{SSRC: 1})
	if err != nil {
		return nil, nil
	}
	defer sub.Close()
	t := time.NewTimer(paramsWait)
	defer t.Stop()
	select {
	case <-k.done:
	case <-t.C:
	case <-sub.Done():
	case <-s.ctx.Done():
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sps, k.pps
}

// paramSink looks for an SPS and a PPS in the first access unit it gets:
// single NAL unit packets or STAP-A aggregates (RFC 6184).
type paramSink struct {
	mu       sync.Mutex
	sps, pps []byte
	ts       uint32
	started  bool
	done     chan struct{}
	once     sync.Once
}

func (k *paramSink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.started && h.Timestamp != k.ts { // past the first access unit
		k.finish()
		return len(payload), nil
	}
	k.started, k.ts = true, h.Timestamp
	k.scan(payload)
	if len(k.sps) > 0 && len(k.pps) > 0 {
		k.finish()
	}
	return len(payload), nil
}

func (k *paramSink) finish() { k.once.Do(func() { close(k.done) }) }

// scan takes an SPS or PPS from one packet's payload.
func (k *paramSink) scan(p []byte) {
	if len(p) == 0 {
		return
	}
	switch p[0] & 0x1f {
	case 7, 8:
		k.take(p)
	case 24: // STAP-A: 16-bit sizes, each followed by a NAL unit
		for i := 1; i+2 <= len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				return
			}
			k.take(p[i : i+n])
			i += n
		}
	}
}

func (k *paramSink) take(nalu []byte) {
	switch nalu[0] & 0x1f {
	case 7:
		k.sps = append([]byte(nil), nalu...)
	case 8:
		k.pps = append([]byte(nil), nalu...)
	}
}
