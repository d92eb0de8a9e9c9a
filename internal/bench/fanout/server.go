package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/parley/parley/internal/sfu"
	"github.com/parley/parley/internal/whip"
)

// Server is a minimal Parley media server (SFU + WHIP/WHEP) on loopback,
// for benchmarks.
type Server struct {
	URL  string
	SFU  *sfu.SFU
	whip *whip.Handler
	http *http.Server
	done chan error
}

// StartServer serves WHIP/WHEP on addr (a loopback address) with ICE on a
// free loopback UDP port. withPprof also mounts /debug/pprof/ and /debug/sfu/stats (JSON).
func StartServer(ctx context.Context, addr string, log *slog.Logger, withPprof bool) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("fanout: server address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("fanout: server address %q is not loopback", addr)
	}
	s, err := sfu.New(sfu.Config{UDP: net.JoinHostPort(host, "0"), TCP: "off", PublicIP: host, Logger: log})
	if err != nil {
		return nil, err
	}
	wh, err := whip.New(whip.Config{SFU: s, Logger: log, TrackWait: 5 * time.Second})
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/whip/", wh)
	mux.Handle("/whep/", wh)
	if withPprof {
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/", pprof.Index) // heap, goroutine, ...
		mux.HandleFunc("/debug/sfu/stats", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s.Stats())
		})
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		wh.Close()
		_ = s.Close()
		return nil, fmt.Errorf("fanout: listen: %w", err)
	}
	srv := &Server{
		URL:  "http://" + ln.Addr().String(),
		SFU:  s,
		whip: wh,
		http: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan error, 1),
	}
	go func() {
		err := srv.http.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		srv.done <- err
	}()
	return srv, nil
}

// Close stops the server and waits for it.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	s.whip.Close()
	_ = s.SFU.Close()
	if e := <-s.done; e != nil && err == nil {
		err = e
	}
	return err
}
