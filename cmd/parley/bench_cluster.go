package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/parley/parley/internal/auth"
	"github.com/parley/parley/internal/bench/signaling"
	"github.com/parley/parley/internal/room"
)

// startClusterChildren starts n `parley serve` children as nodes of one
// cluster (the first runs the embedded NATS server), waits until each
// lists all of them, and points o at them with a token for the bench's
// rooms. pprofAddr, if set, is the first node's --pprof; pin puts node i
// on CPU i mod the CPU count. stop ends them all.
func startClusterChildren(ctx context.Context, o *signaling.Options, n int, pprofAddr string, pin bool) (stop func(), err error) {
	secret := room.NewSecret() + room.NewSecret()
	natsAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	var children []childServer
	stop = func() { // the node with the NATS server last
		for i := len(children) - 1; i >= 0; i-- {
			children[i].stop()
		}
	}
	for i := range n {
		extra := []string{"--turn", "off", "--media-udp", "off", "--max-rooms", "100000", "--max-sessions", fmt.Sprint(o.Clients + 1000),
			"--auth-secret", secret, "--turn-secret", secret, "--cluster-node", fmt.Sprint("n", i+1)}
		if i == 0 {
			extra = append(extra, "--cluster", "embedded", "--cluster-listen", natsAddr)
			if pprofAddr != "" {
				extra = append(extra, "--pprof", pprofAddr)
			}
		} else {
			extra = append(extra, "--cluster", "nats://"+natsAddr)
		}
		cpu := -1
		if pin {
			cpu = i % runtime.NumCPU()
		}
		c, err := startChildServerOn(ctx, cpu, extra...)
		if err != nil {
			stop()
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		children = append(children, c)
	}
	admin, err := auth.NewToken([]byte(secret), "*", "bench-admin", auth.Grants{Admin: true}, time.Hour, time.Now())
	if err == nil {
		o.Token, err = auth.NewToken([]byte(secret), "bench-*", "bench", auth.Grants{Publish: true, Subscribe: true}, 24*time.Hour, time.Now())
	}
	if err != nil {
		stop()
		return nil, err
	}
	for _, c := range children {
		if err := awaitNodes(ctx, c.ops, admin, n); err != nil {
			stop()
			return nil, err
		}
	}
	o.URL, o.OpsURL = children[0].url, children[0].ops
	for i, c := range children {
		if i > 0 {
			o.Nodes = append(o.Nodes, c.url)
		}
		o.ServerPIDs = append(o.ServerPIDs, c.pid)
	}
	return stop, nil
}

// awaitNodes polls a node's status (10 s at most) until it lists n nodes.
func awaitNodes(ctx context.Context, ops, admin string, n int) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ops+"/api/status", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		var st struct {
			Cluster struct{ Nodes []json.RawMessage }
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && len(st.Cluster.Nodes) == n {
			return nil
		}
	}
	return errors.New("the cluster's nodes did not list each other within 10 s")
}
