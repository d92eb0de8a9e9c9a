// Package cluster lets Parley nodes cooperate over NATS: a node registry
// (who is up, where, how loaded) and room ownership (one owner per room
// at a time), both in JetStream key-value buckets. Without --cluster
// nothing in this package runs.
//
// A node either connects to NATS servers (--cluster nats://host:4222,…)
// or runs one inside itself (--cluster embedded) that other nodes may
// join at --cluster-listen. docs/cluster.md says what is built and what
// is not.
package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure a node's membership.
type Options struct {
	// URLs are the NATS servers to connect to; empty with Embedded.
	URLs []string
	// Embedded runs a NATS server (with JetStream) inside the node.
	Embedded bool
	// Listen is the embedded server's client address ("host:port", port
	// 0 for any); other nodes join the cluster there.
	Listen string
	// StoreDir is the embedded server's JetStream directory.
	StoreDir string

	// Authentication to NATS: a token (which the embedded server then
	// requires), a credentials file (.creds, NATS JWT), TLS client
	// certificate and the CA that signs the servers' certificates.
	Token   string
	Creds   string
	TLSCert string
	TLSKey  string
	TLSCA   string

	// Node is this node's identity and addresses; ID is required.
	Node Node
	// Load reads the node's counters at each heartbeat; nil reports none.
	Load func() Counters
	// TTL is how long a node stays listed without a heartbeat, and how
	// long a room stays owned by a node that stopped refreshing it
	// (default 15 s). Heartbeats go every TTL/3.
	TTL time.Duration
	// Replicas of the buckets on a NATS cluster (default 1).
	Replicas int
	// ConnsPerIP bounds the embedded server's connections from one client
	// address (default 16), MaxConns all of them (default 256).
	ConnsPerIP, MaxConns int
	// Relay carries peer-to-peer rooms' signaling across nodes
	// (relay.go); nil keeps every room on its node.
	Relay *RoomRelay
	// OnLost is told about a room whose ownership the node lost (after
	// NATS lost its state and another node claimed the room first).
	OnLost func(room string)

	Logger *slog.Logger
}

// Counters are what a node's load is computed from.
type Counters struct {
	Sessions    int    // signaling sessions open
	EgressBytes uint64 // media bytes sent so far (a counter; the rate is derived)
}

// Cluster is one node's part in the cluster.
type Cluster struct {
	opts Options
	log  *slog.Logger

	srv   *natsserver.Server // the embedded server, nil when connecting out
	ln    *natsListener      // its listener (listen.go)
	nc    *nats.Conn
	js    jetstream.JetStream
	relay *relay // nil without Options.Relay

	claims *nats.Subscription // rooms other nodes place here (placement.go)

	reconnected chan struct{} // the NATS connection came back: register again
	sessions    atomic.Uint64 // registrations so far (one per session with NATS)
	// missing are nodes listed before a session and not at its start,
	// with the time they are given up at (the run goroutine's own).
	missing map[string]time.Time

	mu        sync.Mutex
	nodes     map[string]Node   // the registry as last seen
	owned     map[string]uint64 // rooms this node owns → their revision
	empty     map[string]bool   // owned rooms found without members at the last heartbeat
	connected bool
	changed   chan struct{} // closed and replaced at each change of nodes
	load      loadMeter

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Bucket names.
const (
	nodesBucket = "parley_nodes"
	roomsBucket = "parley_rooms"
)

// Start joins the cluster: it starts the embedded server if asked,
// connects, and registers the node in the background (registering again
// whenever the connection comes back). Close leaves.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Node.ID == "" {
		return nil, errors.New("cluster: a node needs an ID")
	}
	if o.TTL <= 0 {
		o.TTL = 15 * time.Second
	}
	if o.Node.Started.IsZero() {
		o.Node.Started = time.Now().UTC()
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{opts: o, log: o.Logger.With("plane", "cluster", "node", o.Node.ID),
		reconnected: make(chan struct{}, 1), missing: map[string]time.Time{}, nodes: map[string]Node{}, owned: map[string]uint64{}, empty: map[string]bool{},
		changed: make(chan struct{})}
	if o.Embedded {
		if err := c.startServer(); err != nil {
			return nil, err
		}
	}
	if err := c.connect(ctx); err != nil {
		c.stopServer()
		return nil, err
	}
	if o.Relay != nil {
		c.relay = newRelay(c, *o.Relay)
		if err := c.relay.start(); err != nil {
			c.relay.stop()
			c.nc.Close()
			c.stopServer()
			return nil, err
		}
	}
	claims, err := c.answerClaims()
	if err != nil {
		if c.relay != nil {
			c.relay.stop()
		}
		c.nc.Close()
		c.stopServer()
		return nil, err
	}
	c.claims = claims
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.run()
	return c, nil
}

// startServer runs the embedded NATS server with JetStream.
func (c *Cluster) startServer() error {
	ln, err := net.Listen("tcp", c.opts.Listen)
	if err != nil {
		return fmt.Errorf("cluster-listen: %w", err)
	}
	// What the server says it is at (ClientURL): the bound port, and the
	// host asked for ("" for every address).
	host, _, _ := net.SplitHostPort(c.opts.Listen)
	port := ln.Addr().(*net.TCPAddr).Port
	so := &natsserver.Options{
		ServerName:         "parley-" + c.opts.Node.ID,
		Host:               host,
		Port:               port,
		DontListen:         true, // ln is, with the per-address limit (listen.go)
		MaxConn:            cmp.Or(c.opts.MaxConns, defaultMaxConns),
		JetStream:          true,
		StoreDir:           c.opts.StoreDir,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  1 << 30,
		Authorization:      c.opts.Token,
		NoSigs:             true,
	}
	srv, err := natsserver.NewServer(so)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("cluster: embedded NATS server: %w", err)
	}
	srv.SetLoggerV2(natsLogger{c.log.With("nats", "server")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		_ = ln.Close()
		return fmt.Errorf("cluster: embedded NATS server not ready on %s", c.opts.Listen)
	}
	c.srv = srv
	c.ln = newNATSListener(ln, srv, cmp.Or(c.opts.ConnsPerIP, defaultConnsPerIP), c.log.With("nats", "listener"))
	c.ln.wg.Add(1)
	go c.ln.serve()
	c.log.Info("embedded NATS server is running; other nodes join with --cluster " + srv.ClientURL())
	return nil
}

// ClientURL is the embedded server's address for other nodes' --cluster
// ("" when the node connects out).
func (c *Cluster) ClientURL() string {
	if c.srv == nil {
		return ""
	}
	return c.srv.ClientURL()
}

func (c *Cluster) stopServer() {
	if c.ln != nil {
		c.ln.close()
	}
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
}

// connect opens the NATS connection; it reconnects forever by itself.
func (c *Cluster) connect(ctx context.Context) error {
	o := c.opts
	opts := []nats.Option{
		nats.Name("parley " + o.Node.ID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		// A node never needs what it published itself (its members'
		// events, its "have" announcements, its sync requests): without
		// this NATS sends each back, and every node decoded and dropped
		// them, half its NATS input while rooms relay.
		nats.NoEcho(),
		nats.ReconnectHandler(func(*nats.Conn) {
			c.log.Info("NATS connection back")
			select {
			case c.reconnected <- struct{}{}:
			default:
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.log.Warn("NATS", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			c.setConnected(false)
			if err != nil {
				c.log.Warn("NATS connection lost", "err", err)
			}
		}),
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	url := ""
	for i, u := range o.URLs {
		if i > 0 {
			url += ","
		}
		url += u
	}
	if c.srv != nil {
		opts = append(opts, nats.InProcessServer(c.srv)) // the node's own server, no socket
		url = c.srv.ClientURL()
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("cluster: connect to NATS %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("cluster: jetstream: %w", err)
	}
	if ctx.Err() != nil {
		nc.Close()
		return ctx.Err()
	}
	c.nc, c.js = nc, js
	return nil
}

// Close leaves the cluster: the node's entry and the rooms it owns are
// deleted (others need not wait for the TTL), then the connection and
// the embedded server close.
func (c *Cluster) Close() {
	c.stop(true)
}

// stop ends the node; goodbye says whether it deletes its entries first
// (tests pass false for a node that dies).
func (c *Cluster) stop(goodbye bool) {
	c.stopOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		if goodbye {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c.leave(ctx)
			cancel()
		}
		_ = c.claims.Unsubscribe()
		if c.relay != nil {
			c.relay.stop()
		}
		c.nc.Close()
		c.stopServer()
	})
}

// natsLogger hands the embedded server's log to slog.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l natsLogger) Warnf(f string, v ...any)   { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l natsLogger) Fatalf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l natsLogger) Errorf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l natsLogger) Debugf(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l natsLogger) Tracef(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }
