package server

import (
	"context"
	"time"
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
	if c == nil {
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
