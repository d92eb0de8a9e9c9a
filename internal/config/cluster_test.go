package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestClusterSettings(t *testing.T) {
	secrets := []string{"--auth-secret", strings.Repeat("a", 32), "--turn-secret", strings.Repeat("t", 32)}
	c, err := Load(nil, noEnv, io.Discard)
	if err != nil || c.Cluster != "" || c.ClusterURLs() != nil {
		t.Fatalf("alone by default: %q %v", c.Cluster, err)
	}
	c, err = Load(append([]string{"--cluster", "nats://10.0.0.1:4222, tls://10.0.0.2:4222"}, secrets...), noEnv, io.Discard)
	if err != nil || !slices.Equal(c.ClusterURLs(), []string{"nats://10.0.0.1:4222", "tls://10.0.0.2:4222"}) {
		t.Fatalf("urls: %v %v", c.ClusterURLs(), err)
	}
	file := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(file, []byte("cluster: embedded\ncluster_listen: 0.0.0.0:4222\ncluster_token: tok\ncluster_node: n-1\ncluster_ttl: 3s\ncluster_url: https://n1.example.org\ncluster_redirect: true\n"), 0o600)
	c, err = Load(append([]string{"--config", file}, secrets...), noEnv, io.Discard)
	if err != nil || c.Cluster != "embedded" || c.ClusterListen != "0.0.0.0:4222" || c.ClusterNode != "n-1" || c.ClusterTTL.String() != "3s" ||
		c.ClusterURL != "https://n1.example.org" || !c.ClusterRedirect {
		t.Fatalf("file: %+v %v", c, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "embedded", "--turn-secret", strings.Repeat("t", 32)}, "needs --auth-secret"},
		{[]string{"--cluster", "embedded", "--auth-secret", strings.Repeat("a", 32)}, "needs --turn-secret"},
		{append([]string{"--cluster", "embedded", "--cluster-listen", "0.0.0.0:4222"}, secrets...), "--cluster-token"},
		{append([]string{"--cluster-listen", "127.0.0.1:4222"}, secrets...), "only with --cluster embedded"},
		{append([]string{"--cluster", "http://x:4222"}, secrets...), "not a NATS URL"},
		{append([]string{"--cluster", "embedded", "--cluster-node", "a.b"}, secrets...), "cluster-node"},
		{append([]string{"--cluster", "embedded", "--cluster-ttl", "100ms"}, secrets...), "cluster-ttl"},
		{append([]string{"--cluster", "embedded", "--cluster-replicas", "2"}, secrets...), "cluster-replicas"},
		{append([]string{"--cluster", "embedded", "--cluster-tls-cert", "c.pem"}, secrets...), "go together"},
		{append([]string{"--cluster", "embedded", "--cluster-url", "n1.example.org"}, secrets...), "cluster-url"},
		{append([]string{"--cluster", "embedded", "--cluster-url", "https://n1.example.org/app"}, secrets...), "cluster-url"},
		{append([]string{"--cluster-redirect"}, secrets...), "only with --cluster"},
	} {
		_, err := Load(tc.args, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestDeployConfigs: the three nodes' configuration files in deploy/
// load (every key exists) and make a cluster of three NATS servers with
// replicated buckets, each node with its own name and URL.
func TestDeployConfigs(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"PARLEY_CLUSTER_TOKEN": "tok", "PARLEY_AUTH_SECRET": strings.Repeat("a", 32), "PARLEY_TURN_SECRET": strings.Repeat("t", 32)}[k]
	}
	for i := 1; i <= 3; i++ {
		file := filepath.Join("..", "..", "deploy", "parley", fmt.Sprintf("parley-%d.yaml", i))
		c, err := Load([]string{"--config", file}, env, io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		node := fmt.Sprintf("n%d", i)
		if len(c.ClusterURLs()) != 3 || c.ClusterReplicas != 3 || c.ClusterNode != node || c.ClusterURL != "https://"+node+".example.org" || c.ClusterToken != "tok" {
			t.Errorf("%s: cluster %v, replicas %d, node %q, url %q, token %q", file, c.ClusterURLs(), c.ClusterReplicas, c.ClusterNode, c.ClusterURL, c.ClusterToken)
		}
	}
}
