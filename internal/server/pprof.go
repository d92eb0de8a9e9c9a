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
	if s.cfg.Pprof == "" || s.cfg.Pprof == "off" {
		return nil
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Pprof)
	if err != nil {
		return fmt.Errorf("listen pprof %s: %w", s.cfg.Pprof, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.pprofSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      2 * time.Minute, // a CPU profile may ask for up to this many seconds
		IdleTimeout:       time.Minute,
	}
	go func() {
		if err := s.pprofSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("pprof server stopped", "err", err)
		}
	}()
	s.log.Info("profiler listening", "addr", ln.Addr().String())
	return nil
}
