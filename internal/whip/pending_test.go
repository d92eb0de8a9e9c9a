package whip

import (
	"context"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/clientip"
)

// deadOffer is an offer whose candidates nobody answers: its peer
// connection is closed before the offer is sent, so ICE never completes.
func deadOffer(t *testing.T, publish bool) string {
	t.Helper()
	pc, err := clientAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	if publish {
		if _, err := pc.AddTransceiverFromTrack(vp8Track(t), webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	} else if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	sdp := offerFrom(t, pc)
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	return sdp
}

// TestRow08PendingWHIP is row 8 of issue #10: 400 WHIP POSTs that never
// complete ICE held 4,812 goroutines and +48 MB for 30 s, and squatted the
// stream name (a second publisher got 409). Now one address gets
// PendingPerIP sessions (429 beyond), they hold no name, the first
// publisher to connect takes the stream, and unconnected sessions go after
// ICETimeout.
func TestRow08PendingWHIP(t *testing.T) {
	const limit = 10
	attacker := netip.MustParseAddr("203.0.113.7")
	drops := make(chan string, 64)
	f := newFixtureConfig(t, func(c *Config) {
		c.PendingPerIP = limit
		c.ICETimeout = 4 * time.Second
		// The test names the client in a header, as a trusted proxy would.
		c.ClientAddr = func(r *http.Request) netip.Addr {
			if a, err := netip.ParseAddr(r.Header.Get("X-Test-Client")); err == nil {
				return a
			}
			return clientip.New(nil).Request(r)
		}
		c.onDropped = func(reason string) { drops <- reason }
	})
	pubOffer, viewOffer := deadOffer(t, true), deadOffer(t, false)

	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()

	// 400 POSTs from one address, 20 at a time.
	var mu sync.Mutex
	codes := map[int]int{}
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/whip/x", strings.NewReader(pubOffer))
				req.Header.Set("Content-Type", "application/sdp")
				req.Header.Set("X-Test-Client", attacker.String())
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					continue
				}
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	for range 400 {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	if codes[http.StatusCreated] != limit || codes[http.StatusTooManyRequests] != 400-limit {
		t.Fatalf("answers %v, want %d × 201 and %d × 429", codes, limit, 400-limit)
	}
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	g1 := runtime.NumGoroutine()
	t.Logf("%d pending sessions: +%d goroutines, heap +%.1f MB", limit, g1-g0, float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/1e6)
	if g1-g0 > 60*limit {
		t.Errorf("goroutines grew by %d for %d pending sessions", g1-g0, limit)
	}
	if d := int64(m1.HeapAlloc) - int64(m0.HeapAlloc); d > 24<<20 {
		t.Errorf("heap grew by %d bytes for %d pending sessions", d, limit)
	}

	// The name is not squatted: a real publisher from elsewhere gets it,
	// and the pending ones are dropped when it connects.
	pub := f.publish("x")
	connected := make(chan struct{})
	var once sync.Once
	pub.sess.PeerConnection().OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	if pub.sess.PeerConnection().ConnectionState() == webrtc.PeerConnectionStateConnected {
		once.Do(func() { close(connected) })
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("the real publisher did not connect")
	}
	waitDrops(t, drops, limit, "lost")
	key := clientip.Key(attacker)
	if n := f.h.pending.Count(key); n != 0 {
		t.Fatalf("%d pending slots still held after the drops", n)
	}

	// Now the stream is taken: 409 (not 429) for the next one.
	resp := f.do(http.MethodPost, "/whip/x", "application/sdp", pubOffer, "X-Test-Client", attacker.String())
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("publisher after the stream was taken: %d, want 409", resp.StatusCode)
	}

	// Viewers that never connect are dropped after ICETimeout too.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.run(ctx)
	for range limit {
		if resp := f.do(http.MethodPost, "/whep/x", "application/sdp", viewOffer, "X-Test-Client", attacker.String()); resp.StatusCode != http.StatusCreated {
			t.Fatalf("viewer: %d", resp.StatusCode)
		}
	}
	if resp := f.do(http.MethodPost, "/whep/x", "application/sdp", viewOffer, "X-Test-Client", attacker.String()); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("viewer beyond the limit: %d (Retry-After %q)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	waitDrops(t, drops, limit, "timeout")
	if n := f.h.pending.Count(key); n != 0 {
		t.Fatalf("%d pending slots held after the viewers were dropped", n)
	}
	if st := f.h.Stats(); st != (Stats{Pending: 0, Refused: 400 - limit + 1, TimedOut: limit, Lost: limit}) {
		t.Fatalf("stats: %+v", st)
	}
}

// waitDrops waits for n dropped sessions, each for reason.
func waitDrops(t *testing.T, drops <-chan string, n int, reason string) {
	t.Helper()
	for i := range n {
		select {
		case r := <-drops:
			if r != reason {
				t.Errorf("drop %d: %s, want %s", i, r, reason)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d sessions were dropped (%s)", i, n, reason)
		}
	}
}
