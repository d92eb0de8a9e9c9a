package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// startPprof serves Go's profiler on its own listener (--pprof ADDR), apart
// from the public port; off by default. It is for operators and the load
// tools ("where does the CPU go"); it has no authentication, so the config
// admits only loopback addresses, and its requests are bounded in time.
func (s *Server) startPprof(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// A CPU profile may ask for up to two minutes.
	side, err := s.startSide(ctx, "pprof", s.cfg.Pprof, mux, 2*time.Minute)
	if err != nil || side == nil {
		return err
	}
	s.pprof = side
	s.log.Info("profiler listening", "addr", side.ln.Addr().String())
	return nil
}

// sideServer is an HTTP listener apart from the main port (--ops,
// --pprof), for operators only.
type sideServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
}

// startSide serves h on addr ("" or "off": nothing, nil); its requests
// are bounded in time.
func (s *Server) startSide(ctx context.Context, name, addr string, h http.Handler, writeTimeout time.Duration) (*sideServer, error) {
	if addr == "" || addr == "off" {
		return nil, nil
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", name, addr, err)
	}
	side := &sideServer{ln: ln, done: make(chan struct{}), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       time.Minute,
	}}
	go func() {
		defer close(side.done)
		if err := side.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error(name+" server stopped", "err", err)
		}
	}()
	return side, nil
}

// close shuts the listener down within ctx and waits for it.
func (side *sideServer) close(ctx context.Context) {
	if side == nil {
		return
	}
	if err := side.srv.Shutdown(ctx); err != nil {
		_ = side.srv.Close()
	}
	<-side.done
}

// url is the listener's base URL, "" for nil.
func (side *sideServer) url() string {
	if side == nil {
		return ""
	}
	return "http://" + hostPortURL(side.ln.Addr().(*net.TCPAddr))
}
