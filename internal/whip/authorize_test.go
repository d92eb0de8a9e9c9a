package whip

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/internal/httperr"
)

// TestAuthorizeEnds: Config.Authorize sees each well-formed POST once (not
// a malformed one), its refusals are answered 403 with their code, and
// the end of every allowed session is called exactly once: at once when
// the POST fails after it (a viewer of a stream that is not live), or
// when the session ends.
func TestAuthorizeEnds(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]string{} // id -> stream
	ends := map[string]int{}
	ended := make(chan string, 16)
	f := newFixtureConfig(t, func(c *Config) {
		c.Authorize = func(r *http.Request, stream string, publish bool, id string) (func(), error) {
			mu.Lock()
			calls[id] = stream
			mu.Unlock()
			if stream == "no" {
				return nil, &httperr.Denied{Code: "address_denied", Message: "publish refused: not in --publish-allow"}
			}
			return func() {
				mu.Lock()
				ends[id]++
				mu.Unlock()
				ended <- id
			}, nil
		}
	})
	if resp := f.do("POST", "/whip/x", "application/sdp", "v=0 garbage"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed offer: %d", resp.StatusCode)
	}
	if resp := f.do("POST", "/whip/no", "application/sdp", publisherOffer(t)); resp.StatusCode != http.StatusForbidden || errCode(t, resp) != "address_denied" {
		t.Fatalf("refused publish: %d", resp.StatusCode)
	}
	if resp := f.do("POST", "/whep/gone", "application/sdp", viewerOffer(t)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("viewer of a stream that is not live: %d", resp.StatusCode)
	}
	wait := func(what string) string {
		t.Helper()
		select {
		case id := <-ended:
			return id
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: end not called", what)
			return ""
		}
	}
	if id := wait("not live"); calls[id] != "gone" {
		t.Errorf("ended %s (%s), want the viewer of gone", id, calls[id])
	}
	p := f.publish("s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.sess.Close(ctx)
	if id := wait("publisher closed"); calls[id] != "s" {
		t.Errorf("ended %s (%s), want the publisher of s", id, calls[id])
	}
	f.h.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 3 {
		t.Errorf("Authorize called for %v, want no, gone, s", calls)
	}
	for id, n := range ends {
		if n != 1 {
			t.Errorf("end of %s (%s) called %d times", id, calls[id], n)
		}
	}
	if len(ends) != 2 {
		t.Errorf("ends %v, want gone and s", ends)
	}
}
