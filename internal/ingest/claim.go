package ingest

import (
	"fmt"
	"sync"

	"github.com/parley/parley/internal/sfu"
)

// LocalClaimer keeps stream names among one listener's publishers: the
// claim a listener uses when it runs without a shared Claimer (tests).
func LocalClaimer() Claimer {
	var mu sync.Mutex
	held := map[string]bool{}
	return func(stream string, _ int) (Claim, error) {
		mu.Lock()
		defer mu.Unlock()
		if held[stream] {
			return nil, fmt.Errorf("stream %s already has a publisher", stream)
		}
		held[stream] = true
		return &localClaim{release: sync.OnceFunc(func() {
			mu.Lock()
			delete(held, stream)
			mu.Unlock()
		})}, nil
	}
}

type localClaim struct{ release func() }

func (*localClaim) Published(sfu.TrackInfo) {}
func (l *localClaim) Release()              { l.release() }
