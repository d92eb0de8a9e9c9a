package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/signal"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// seqReader follows one well-behaved member: it reads every event and
// checks that the relayed messages ({"seq": n, ...}) arrive all and in
// order. got delivers each seq as it comes; err ends it early.
type seqReader struct {
	got  chan int
	err  chan error
	last int // highest seq seen by waitSeq
}

func readSeqs(c *client.Client) *seqReader {
	r := &seqReader{got: make(chan int, 4096), err: make(chan error, 1), last: -1}
	go func() {
		want := 0
		for m := range c.Events() {
			switch m.Type {
			case protocol.TypeSignal:
				var d struct{ Seq int }
				if err := json.Unmarshal(m.Data, &d); err != nil {
					r.err <- err
					return
				}
				if d.Seq != want {
					r.err <- fmt.Errorf("message %d arrived where %d was due", d.Seq, want)
					return
				}
				want++
				r.got <- d.Seq
			case protocol.TypeError:
				r.err <- fmt.Errorf("error %s: %s", m.Code, m.Message)
				return
			}
		}
		r.err <- fmt.Errorf("session ended: %v", c.Err())
	}()
	return r
}

// waitSeq waits until the member has received message n.
func (r *seqReader) waitSeq(t *testing.T, who string, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for r.last < n {
		select {
		case r.last = <-r.got:
			if r.last >= n {
				return
			}
		case err := <-r.err:
			t.Fatalf("%s: %v", who, err)
		case <-timeout:
			t.Fatalf("%s: message %d never arrived", who, n)
		}
	}
}

// Row 3 of issue #10: 60 members of a chat room that never read and one
// sender of 60 KB messages to "*" at 50/s (inside the message rate limit).
// The outboxes were bounded in messages only and every receiver had its own
// copy: 1.4 GB in 7 s. Now outboxes are bounded in bytes and the message is
// encoded once and shared, so the heap stays small and the members who
// read get every message, in order.
func TestRow03ChatAmplification(t *testing.T) {
	const (
		silent  = 60
		readers = 10
		msgs    = 100
		size    = 60 << 10
	)
	// A byte rate high enough not to matter here: the outbox bound and the
	// shared encoding must hold the line on their own.
	_, url := newHub(t, signal.Options{ByteRate: 1 << 30, ByteBurst: 1 << 30, RateLimit: 50, RateBurst: 200,
		Capacity: func(string, string) int { return 100 }})
	const room = "chat.stream"
	sender := dial(t, url, "")
	join(t, sender, room, "sender")
	var rs []*seqReader
	for i := 0; i < readers; i++ {
		c := dial(t, url, "")
		join(t, c, room, fmt.Sprint("reader", i))
		rs = append(rs, readSeqs(c))
	}
	for i := 0; i < silent; i++ {
		joinWithoutReading(t, url, room)
	}
	// The last silent member has joined once the sender hears of it.
	for n := 0; n < readers+silent; {
		if m := <-sender.Events(); m.Type == protocol.TypePeerJoined {
			n++
		}
	}
	go func() { // the sender's own events are not the point
		for range sender.Events() {
		}
	}()
	base := heapInUse()
	pad := strings.Repeat("x", size)
	tick := time.NewTicker(time.Second / 50)
	defer tick.Stop()
	var peak uint64
	ctx := context.Background()
	for i := 0; i < msgs; i++ {
		if err := sender.SendRaw(ctx, []byte(fmt.Sprintf(`{"type":"signal","to":"*","data":{"seq":%d,"pad":%q}}`, i, pad))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%10 == 9 {
			// Wait for the readers to have it, then weigh what the server holds.
			for j, r := range rs {
				r.waitSeq(t, fmt.Sprint("reader", j), i)
			}
			h := heapInUse()
			peak = max(peak, h)
			if h > base+50<<20 {
				t.Fatalf("heap grew by %d MB after %d messages of %d KB to %d members", (h-base)>>20, i+1, size>>10, silent+readers)
			}
		}
		<-tick.C
	}
	for j, r := range rs {
		r.waitSeq(t, fmt.Sprint("reader", j), msgs-1)
	}
	t.Logf("heap growth at most %.1f MB", float64(int64(peak)-int64(base))/(1<<20))
}

// The byte rate limits a sender of big messages that stays inside the
// message rate.
func TestByteRateLimited(t *testing.T) {
	_, url := newHub(t, signal.Options{MaxMessage: 16 << 10, ByteRate: 32 << 10, ByteBurst: 64 << 10})
	a, b := dial(t, url, ""), dial(t, url, "")
	join(t, a, "bytes", "a")
	jb := join(t, b, "bytes", "b")
	next(t, a, protocol.TypePeerJoined)
	ctx := context.Background()
	pad := strings.Repeat("p", 15<<10)
	for i := 0; i < 5; i++ { // 75 KB at once: over the 64 KB burst
		a.Signal(ctx, jb.ID, pad)
	}
	expectError(t, a, protocol.CodeRateLimited)
	for i := 0; i < 4; i++ {
		next(t, b, protocol.TypeSignal)
	}
}
