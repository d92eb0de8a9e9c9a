package cluster

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parley/parley/internal/clientip"
	"github.com/parley/parley/internal/limit"
)

// The embedded NATS server's listener is Parley's, not the server's own:
// nats-server bounds connections in all (MaxConns) but not per client
// address, so other nodes' connections are accepted here, at most
// ConnsPerIP at once from one address, and handed to the server
// in-process (it still asks for the token and closes clients that do not
// authenticate within its auth timeout or stop answering its pings).

// Defaults of the embedded server's bounds.
const (
	defaultConnsPerIP = 16
	defaultMaxConns   = 256
	// natsWriteTimeout bounds each write to a node's connection: a node
	// that stops reading is let go rather than holding the server's
	// writes to it (which nats-server's own write deadline then ends).
	natsWriteTimeout = 10 * time.Second
)

// natsListener accepts other nodes' connections for the embedded server.
type natsListener struct {
	ln      net.Listener
	srv     *natsserver.Server
	conns   *limit.Conns
	log     *slog.Logger
	refused atomic.Uint64

	mu   sync.Mutex
	open map[net.Conn]struct{}
	wg   sync.WaitGroup
}

func newNATSListener(ln net.Listener, srv *natsserver.Server, perIP int, log *slog.Logger) *natsListener {
	return &natsListener{ln: ln, srv: srv, conns: limit.NewConns(perIP), log: log, open: map[net.Conn]struct{}{}}
}

// serve accepts until close.
func (l *natsListener) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // out of files, for one: do not spin
			l.log.Warn("accepting a NATS connection", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		release, ok := l.conns.Acquire(clientip.Key(clientip.Addr(c.RemoteAddr())))
		if !ok {
			l.refused.Add(1)
			l.log.Info("refusing a NATS connection: too many from this address", "remote", c.RemoteAddr())
			_ = c.Close()
			continue
		}
		in, err := l.srv.InProcessConn()
		if err != nil {
			release()
			_ = c.Close()
			continue
		}
		if !l.track(c, in) {
			release()
			return // closing
		}
		l.wg.Add(1)
		go l.pipe(c, in, release)
	}
}

// track records an open pair, false once the listener is closing.
func (l *natsListener) track(c, in net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		_ = c.Close()
		_ = in.Close()
		return false
	}
	l.open[c], l.open[in] = struct{}{}, struct{}{}
	return true
}

// pipe copies between a node's connection and its in-process one until
// either side ends.
func (l *natsListener) pipe(c, in net.Conn, release func()) {
	defer l.wg.Done()
	var once sync.Once
	end := func() {
		// The place first: a client that sees its connection end may
		// dial again at once, and must not find it still taken.
		once.Do(release)
		_ = in.Close()
		_ = c.Close()
	}
	up := make(chan struct{})
	go func() { // this pipe's, ended by the closes below
		defer close(up)
		_, _ = io.Copy(in, c)
		end()
	}()
	_, _ = io.Copy(deadlineWriter{c}, in)
	end()
	<-up
	l.mu.Lock()
	if l.open != nil {
		delete(l.open, c)
		delete(l.open, in)
	}
	l.mu.Unlock()
}

// close stops accepting, ends every connection and waits for them.
func (l *natsListener) close() {
	_ = l.ln.Close()
	l.mu.Lock()
	open := l.open
	l.open = nil
	l.mu.Unlock()
	for c := range open {
		_ = c.Close()
	}
	l.wg.Wait()
}

// deadlineWriter bounds each write by natsWriteTimeout.
type deadlineWriter struct{ c net.Conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(natsWriteTimeout))
	return w.c.Write(p)
}
