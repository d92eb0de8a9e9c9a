package server

import (
	"context"
	"time"

	"github.com/parley/parley/internal/cluster"
)

// Clustering, what clients are told (docs/cluster.md, "Node loss",
// "Draining", "Placement"): the other nodes to go to when this one is
// unreachable or drained, and the node placed to carry a group room's
// media.

// placeTimeout bounds placing a room during a join.
const placeTimeout = 2 * time.Second

// otherNodes are the cluster's other nodes' base URLs, least loaded
// first (the hub's Options.Nodes); none alone or before joining.
func (s *Server) otherNodes() []string {
	c := s.clusterView.Load()
	if c == nil {
		return nil
	}
	nodes := c.Others()
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.HTTP
	}
	return out
}

// mediaNode is the base URL of the node placed to carry a group room's
// media, "" when it is this node (the hub's Options.MediaNode). Placing
// fails open: a node that cannot reach NATS carries the room itself.
func (s *Server) mediaNode(room string) string {
	c := s.clusterView.Load()
	if c == nil || !c.Status().Connected { // away from NATS: no join waits for it
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), placeTimeout)
	defer cancel()
	n, err := c.PlaceRoom(ctx, room)
	if err != nil {
		s.log.Warn("placing a room", "room", room, "err", err)
		return ""
	}
	if n.ID == c.Status().Node {
		return ""
	}
	return n.HTTP
}

// whepOrigin is where a WHEP viewer of a stream not live here goes
// (whip.Config.Redirect): with --cluster-redirect, the base URL of the
// node the stream is published on; "" to serve the viewer here (the media
// relay serves viewers on any node, the default).
func (s *Server) whepOrigin(ctx context.Context, stream string) string {
	c := s.clusterView.Load()
	if c == nil || !s.cfg.ClusterRedirect || !c.Status().Connected {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, placeTimeout)
	defer cancel()
	n, ok, err := c.StreamOrigin(ctx, stream)
	if err != nil {
		s.log.Warn("looking up a stream's origin", "stream", stream, "err", err)
	}
	if !ok || n.ID == c.Status().Node {
		return ""
	}
	return n.HTTP
}

// clusterTrafficMetrics exports what the node's NATS connection carried.
func (s *Server) clusterTrafficMetrics(c *cluster.Cluster) {
	for _, m := range []struct {
		name, help string
		pick       func(inM, outM, inB, outB uint64) uint64
	}{
		{"parley_cluster_nats_in_messages_total", "Messages this node received from NATS.", func(v, _, _, _ uint64) uint64 { return v }},
		{"parley_cluster_nats_out_messages_total", "Messages this node published to NATS.", func(_, v, _, _ uint64) uint64 { return v }},
		{"parley_cluster_nats_in_bytes_total", "Payload bytes this node received from NATS.", func(_, _, v, _ uint64) uint64 { return v }},
		{"parley_cluster_nats_out_bytes_total", "Payload bytes this node published to NATS.", func(_, _, _, v uint64) uint64 { return v }},
	} {
		s.metrics.CounterFunc(m.name, m.help, func() float64 { return float64(m.pick(c.Traffic())) })
	}
}
