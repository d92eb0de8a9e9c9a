package config

import (
	"flag"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Clustering (internal/cluster, docs/cluster.md): the settings that make
// this server a node of a cluster over NATS.

// DefaultClusterListen is where --cluster embedded listens without
// --cluster-listen.
const DefaultClusterListen = "127.0.0.1:4222"

// clusterFlags registers the clustering options.
func clusterFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.Cluster, "cluster", cfg.Cluster, "join a cluster of Parley nodes over NATS: `nats://host:4222,...`, or embedded to run a NATS server inside this node (needs --auth-secret and --turn-secret, the same on every node); empty: run alone")
	fs.StringVar(&cfg.ClusterListen, "cluster-listen", cfg.ClusterListen, "with --cluster embedded: the NATS client `address` other nodes join at (default "+DefaultClusterListen+"; off loopback it needs --cluster-token)")
	fs.StringVar(&cfg.ClusterNode, "cluster-node", cfg.ClusterNode, "this node's `name` in the cluster (A-Z a-z 0-9 _ -); default: random at each start")
	fs.Var(&cfg.ClusterTTL, "cluster-ttl", "a node that stops heartbeating is dropped from the cluster after this long (heartbeats every third of it), and its rooms are free again")
	fs.StringVar(&cfg.ClusterToken, "cluster-token", cfg.ClusterToken, "NATS authentication `token` (the embedded server requires it)")
	fs.StringVar(&cfg.ClusterCreds, "cluster-creds", cfg.ClusterCreds, "NATS credentials `file` (.creds: user JWT and NKey seed)")
	fs.StringVar(&cfg.ClusterTLSCert, "cluster-tls-cert", cfg.ClusterTLSCert, "TLS client certificate `file` (PEM) for NATS")
	fs.StringVar(&cfg.ClusterTLSKey, "cluster-tls-key", cfg.ClusterTLSKey, "TLS client key `file` (PEM) for NATS")
	fs.StringVar(&cfg.ClusterTLSCA, "cluster-tls-ca", cfg.ClusterTLSCA, "CA `file` (PEM) the NATS servers' certificates are checked with")
	fs.IntVar(&cfg.ClusterReplicas, "cluster-replicas", cfg.ClusterReplicas, "replicas of the cluster's key-value buckets on a NATS cluster (1, 3 or 5)")
	fs.StringVar(&cfg.ClusterURL, "cluster-url", cfg.ClusterURL, "the base `URL` clients reach this node at (https://n1.example.org), handed to clients of other nodes that must move; default: the HTTP listener's address (with --public-ip)")
	fs.IntVar(&cfg.ClusterConnsPerIP, "cluster-conns-per-ip", cfg.ClusterConnsPerIP, "with --cluster embedded: the NATS server's connections from one client address at once (other nodes need one each)")
	fs.BoolVar(&cfg.ClusterRedirect, "cluster-redirect", cfg.ClusterRedirect, "WHEP on a node that is not the stream's origin answers with a redirect (307) to the origin instead of serving the viewer here")
}

var clusterNodeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ClusterURLs are the NATS servers of --cluster (none for embedded).
func (c *Config) ClusterURLs() []string {
	if c.Cluster == "" || c.Cluster == "embedded" {
		return nil
	}
	var out []string
	for _, u := range strings.Split(c.Cluster, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func (c *Config) validateCluster(bad func(string, ...any)) {
	if c.Cluster == "" {
		if c.ClusterListen != "" {
			bad("cluster-listen: only with --cluster embedded")
		}
		if c.ClusterURL != "" || c.ClusterRedirect {
			bad("cluster-url and cluster-redirect: only with --cluster")
		}
		return
	}
	if c.Cluster == "embedded" {
		listen := c.ClusterListen
		if listen == "" {
			listen = DefaultClusterListen
		}
		host, _, err := net.SplitHostPort(listen)
		if err != nil {
			bad("cluster-listen: %q is not host:port: %v", listen, err)
		} else if ip, perr := netip.ParseAddr(host); (perr != nil || !ip.IsLoopback()) && host != "localhost" && c.ClusterToken == "" {
			bad("cluster-listen: %q is reachable from other machines: set --cluster-token (every node passes it) so that only Parley nodes join", listen)
		}
	} else {
		if c.ClusterListen != "" {
			bad("cluster-listen: only with --cluster embedded (this node joins %s)", c.Cluster)
		}
		urls := c.ClusterURLs()
		if len(urls) == 0 {
			bad("cluster: %q names no NATS server (nats://host:4222,... or embedded)", c.Cluster)
		}
		for _, s := range urls {
			u, err := url.Parse(s)
			if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") {
				bad("cluster: %q is not a NATS URL (nats://host:4222, tls://, ws:// or wss://) nor embedded", s)
			}
		}
	}
	// Every node must verify the same tokens and hand out TURN
	// credentials every node's TURN accepts: secrets random per start
	// would not do.
	if c.AuthSecret == "" && c.AuthPublicKey == "" && c.AuthJWKS == "" {
		bad("cluster: needs --auth-secret (or --auth-public-key / --auth-jwks), the same on every node: a member may reach any node with its token")
	}
	if c.TURNSecret == "" {
		bad("cluster: needs --turn-secret, the same on every node: without it each node makes up its own at each start and TURN credentials from one would fail at another")
	}
	if c.ClusterNode != "" && !clusterNodeRE.MatchString(c.ClusterNode) {
		bad("cluster-node: %q is not 1-64 characters of A-Z a-z 0-9 _ -", c.ClusterNode)
	}
	if c.ClusterTTL.D() < time.Second {
		bad("cluster-ttl: must be at least 1s, got %s", c.ClusterTTL)
	}
	if (c.ClusterTLSCert == "") != (c.ClusterTLSKey == "") {
		bad("cluster-tls-cert and cluster-tls-key go together")
	}
	if c.ClusterConnsPerIP < 1 {
		bad("cluster-conns-per-ip: must be at least 1, got %d", c.ClusterConnsPerIP)
	}
	if r := c.ClusterReplicas; r != 1 && r != 3 && r != 5 {
		bad("cluster-replicas: must be 1, 3 or 5, got %d", r)
	}
	if c.ClusterURL != "" {
		if u, err := url.Parse(c.ClusterURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
			bad("cluster-url: %q is not a base URL (https://host[:port])", c.ClusterURL)
		}
	}
}
