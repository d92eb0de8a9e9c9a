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
	"github.com/parley/parley/internal/bench/benchsrv"
	"github.com/parley/parley/internal/bench/signaling"
	"github.com/parley/parley/internal/room"
)

// benchCluster is n `parley serve` children forming one cluster.
type benchCluster struct {
	nodes  []childServer // node 1 runs the embedded NATS server
	secret string        // their --auth-secret and --turn-secret
	admin  string        // an admin token
}

// stop ends the nodes, the one with the NATS server last.
func (c *benchCluster) stop() {
	for i := len(c.nodes) - 1; i >= 0; i-- {
		c.nodes[i].stop()
	}
}

// startBenchCluster starts n `parley serve` children with these flags as
// nodes of one cluster (the first runs the embedded NATS server) and
// waits until each lists all of them. pprofAddr, if set, is the first
// node's --pprof; pin puts node i on CPU i mod the CPU count.
func startBenchCluster(ctx context.Context, n int, flags []string, pprofAddr string, pin bool) (*benchCluster, error) {
	c := &benchCluster{secret: room.NewSecret() + room.NewSecret()}
	natsAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	for i := range n {
		extra := append(append([]string(nil), flags...), "--auth-secret", c.secret, "--turn-secret", c.secret, "--cluster-node", fmt.Sprint("n", i+1))
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
		node, err := startChildServerOn(ctx, cpu, extra...)
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		c.nodes = append(c.nodes, node)
	}
	if c.admin, err = auth.NewToken([]byte(c.secret), "*", "bench-admin", auth.Grants{Admin: true}, time.Hour, time.Now()); err != nil {
		c.stop()
		return nil, err
	}
	for _, node := range c.nodes {
		if err := awaitNodes(ctx, node.ops, c.admin, n); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

// token grants publishing and watching the rooms or streams named by
// pattern for a day.
func (c *benchCluster) token(pattern string) (string, error) {
	return auth.NewToken([]byte(c.secret), pattern, "bench", auth.Grants{Publish: true, Subscribe: true}, 24*time.Hour, time.Now())
}

// startMediaCluster starts n nodes with the media benches' server flags
// and returns them with a token for the rooms or streams named by pattern.
func startMediaCluster(ctx context.Context, n int, pin bool, pattern string) (*benchCluster, string, error) {
	c, err := startBenchCluster(ctx, n, append(append([]string(nil), benchsrv.Args...), "--rtsp", "off", "--srt", "off"), "", pin)
	if err != nil {
		return nil, "", err
	}
	tok, err := c.token(pattern)
	if err != nil {
		c.stop()
		return nil, "", err
	}
	return c, tok, nil
}

// startClusterChildren starts the signaling bench's n nodes and points o
// at them with a token for the bench's rooms; stop ends them all.
func startClusterChildren(ctx context.Context, o *signaling.Options, n int, pprofAddr string, pin bool) (stop func(), err error) {
	flags := []string{"--turn", "off", "--media-udp", "off", "--max-rooms", "100000", "--max-sessions", fmt.Sprint(o.Clients + 1000)}
	c, err := startBenchCluster(ctx, n, flags, pprofAddr, pin)
	if err != nil {
		return nil, err
	}
	if o.Token, err = c.token("bench-*"); err != nil {
		c.stop()
		return nil, err
	}
	o.URL, o.OpsURL, o.Nodes, o.ServerPIDs = c.endpoints()
	return c.stop, nil
}

// endpoints are what a bench spreading its clients over the nodes needs:
// the first node's URL and operations listener (it runs the NATS server),
// the other nodes' URLs, and every node's process.
func (c *benchCluster) endpoints() (url, ops string, others []string, pids []int) {
	for i, node := range c.nodes {
		if i > 0 {
			others = append(others, node.url)
		}
		pids = append(pids, node.pid)
	}
	return c.nodes[0].url, c.nodes[0].ops, others, pids
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
