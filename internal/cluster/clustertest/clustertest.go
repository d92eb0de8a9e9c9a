// Package clustertest runs what cluster tests need besides Parley's own
// nodes: a NATS server of the cluster's own.
package clustertest

import (
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// NATS runs a NATS server with JetStream on a loopback port (port
// natsserver.RANDOM_PORT for any), storing in dir; it shuts down at the
// test's end.
func NATS(t testing.TB, port int, dir string) *natsserver.Server {
	t.Helper()
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}
