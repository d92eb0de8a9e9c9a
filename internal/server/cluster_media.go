package server

import (
	"context"
	"fmt"

	"github.com/parley/parley/internal/cluster"
	"github.com/parley/parley/internal/sfu"
)

// Streams across nodes (internal/cluster's media relay, docs/cluster.md):
// a viewer on this node of a stream published on another one gets it
// through a relay this node starts on demand. Without --cluster, or with
// media off, none of this runs.

// startClusterMedia starts the relay once the node is in the cluster.
func (s *Server) startClusterMedia() error {
	if s.cluster == nil || s.sfu == nil {
		return nil
	}
	o := cluster.MediaOptions{SFU: s.sfu, OnStream: s.streamWatch.notify, Logger: s.log}
	if s.whip != nil {
		o.Claim = s.claimStream
	}
	m, err := s.cluster.StartMedia(o)
	if err != nil {
		return fmt.Errorf("cluster media: %w", err)
	}
	s.clusterMedia.Store(m)
	st := m.Stats()
	gauge := func(v interface{ Load() int64 }) func() float64 { return func() float64 { return float64(v.Load()) } }
	count := func(v interface{ Load() uint64 }) func() float64 { return func() float64 { return float64(v.Load()) } }
	s.metrics.GaugeFunc("parley_cluster_streams_origin", "Streams published on this node and announced to the cluster.", gauge(&st.Streams))
	s.metrics.GaugeFunc("parley_cluster_relays", "Tracks this node relays in from their origin on another node (one per track, however many viewers).", gauge(&st.Relays))
	s.metrics.GaugeFunc("parley_cluster_relay_sending", "Tracks of this node's streams sent to other nodes.", gauge(&st.Sending))
	for _, c := range []struct {
		name, help string
		v          interface{ Load() uint64 }
	}{
		{"parley_cluster_relays_started_total", "Relayed tracks started on this node.", &st.RelaysStarted},
		{"parley_cluster_relay_packets_out_total", "RTP packets sent to other nodes over NATS.", &st.PacketsOut},
		{"parley_cluster_relay_bytes_out_total", "Bytes of the RTP messages sent to other nodes over NATS.", &st.BytesOut},
		{"parley_cluster_relay_packets_in_total", "RTP packets received from other nodes and published here.", &st.PacketsIn},
		{"parley_cluster_relay_rejected_total", "Relay messages from NATS that failed the checks.", &st.Rejected},
	} {
		s.metrics.CounterFunc(c.name, c.help, count(c.v))
	}
	return nil
}

// stopClusterMedia stops every relay (before the node leaves the cluster).
func (s *Server) stopClusterMedia() {
	if m := s.clusterMedia.Swap(nil); m != nil {
		m.Close()
	}
}

// ClusterMedia is the node's stream relay, nil without --cluster.
func (s *Server) ClusterMedia() *cluster.Media { return s.clusterMedia.Load() }

// clusterRoomChanged tells the relay of an SFU room's change.
func (s *Server) clusterRoomChanged(ns sfu.Namespace, name string) {
	if m := s.clusterMedia.Load(); m != nil {
		m.RoomChanged(ns, name)
	}
}

// demandRelay relays a stream published on another node for a viewer.
func (s *Server) demandRelay(ctx context.Context, stream string) bool {
	if m := s.clusterMedia.Load(); m != nil {
		return m.Demand(ctx, stream)
	}
	return false
}

// liveElsewhere says whether another node is a stream's origin (a viewer
// here gets it through the relay).
func (s *Server) liveElsewhere(stream string) bool {
	if m := s.clusterMedia.Load(); m != nil {
		_, ok := m.Elsewhere(stream)
		return ok
	}
	return false
}
