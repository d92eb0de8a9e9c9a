package server

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/parley/parley/internal/cluster"
	"github.com/parley/parley/internal/config"
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/internal/signal"
)

// Clustering (--cluster; internal/cluster, docs/cluster.md): the node
// announces itself in the cluster's registry and shows the membership in
// the status and the metrics. Without --cluster none of this runs.

// startCluster joins the cluster once the listeners are up (their
// addresses are the node's).
func (s *Server) startCluster(ctx context.Context) error {
	if s.cfg.Cluster == "" {
		return nil
	}
	id := s.nodeID
	node := cluster.Node{ID: id, HTTP: s.scheme + "://" + s.advertised(s.ln.Addr())}
	if s.cfg.ClusterURL != "" {
		node.HTTP = strings.TrimRight(s.cfg.ClusterURL, "/")
	}
	if s.sfu != nil {
		node.Media = s.advertised(s.sfu.UDPAddr())
	}
	if s.turn != nil {
		node.TURN = s.advertised(s.turn.UDPAddr())
	}
	listen := s.cfg.ClusterListen
	if listen == "" {
		listen = config.DefaultClusterListen
	}
	c, err := cluster.Start(ctx, cluster.Options{
		URLs: s.cfg.ClusterURLs(), Embedded: s.cfg.Cluster == "embedded", Listen: listen,
		StoreDir: filepath.Join(s.cfg.DataDir, "nats"),
		Token:    s.cfg.ClusterToken, Creds: s.cfg.ClusterCreds,
		TLSCert: s.cfg.ClusterTLSCert, TLSKey: s.cfg.ClusterTLSKey, TLSCA: s.cfg.ClusterTLSCA,
		Node: node, Load: s.clusterLoad, TTL: s.cfg.ClusterTTL.D(), Replicas: s.cfg.ClusterReplicas, ConnsPerIP: s.cfg.ClusterConnsPerIP,
		Relay:  &cluster.RoomRelay{Rooms: s.rooms, PeerOf: signal.PeerOf, RemoteInfo: signal.RemoteInfo, Moved: s.hub.Moved},
		Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.cluster = c
	s.clusterView.Store(c)
	if err := s.startClusterMedia(); err != nil {
		return err
	}
	s.metrics.GaugeFunc("parley_cluster_nodes", "Nodes in the cluster's registry, this one included.", func() float64 { return float64(len(c.Nodes())) })
	s.metrics.GaugeFunc("parley_cluster_connected", "1 while the node is connected to NATS and registered.", func() float64 {
		if c.Status().Connected {
			return 1
		}
		return 0
	})
	s.clusterTrafficMetrics(c)
	s.metrics.GaugeFunc("parley_cluster_rooms_owned", "Rooms this node owns in the cluster.", func() float64 { return float64(c.Status().Owned) })
	s.log.Info("joined the cluster", "node", id, "nats", s.cfg.Cluster)
	return nil
}

// adopt moves a member of another node here (a resume of its client
// here; signal/move.go).
func (s *Server) adopt(id string, m *room.Member, valid func(old *room.Member, node string) bool) (*room.Room, error) {
	c := s.clusterView.Load()
	if c == nil {
		return nil, cluster.ErrNotMovable
	}
	return c.Adopt(id, m, valid)
}

// clusterLoad is what the node's load in the registry is made of.
func (s *Server) clusterLoad() cluster.Counters {
	c := cluster.Counters{Sessions: s.hub.Sessions()}
	if s.sfu != nil {
		c.EgressBytes = s.sfu.Stats().Bytes
	}
	return c
}

// advertised is a listener's address as other nodes and clients reach
// it: --public-ip for a listener on every interface.
func (s *Server) advertised(a net.Addr) string {
	var ip net.IP
	var port int
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, port = a.IP, a.Port
	case *net.UDPAddr:
		ip, port = a.IP, a.Port
	default:
		return a.String()
	}
	host := ip.String()
	if ip.IsUnspecified() && s.cfg.PublicIP != "" {
		host = s.cfg.PublicIP
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// stopCluster leaves the cluster (Shutdown).
func (s *Server) stopCluster() {
	if s.cluster != nil {
		s.stopClusterMedia()
		s.cluster.Close()
	}
}

// Cluster is the node's part in the cluster, nil without --cluster.
func (s *Server) Cluster() *cluster.Cluster { return s.cluster }

// clusterStatus is the status's cluster section, nil without --cluster.
func (s *Server) clusterStatus() *cluster.Status {
	if s.cluster == nil {
		return nil
	}
	st := s.cluster.Status()
	return &st
}
