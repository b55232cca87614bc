package clustertest

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

// StockCluster is a JetStream cluster started the way an operator starts
// `nats-server -js`: nats-server's default options (max_payload 1 MiB,
// default fsync, no system account), not the platform's embedded cluster,
// so tests cannot lean on a setting only the platform's nodes have.
type StockCluster struct {
	// Servers are the running servers, in start order.
	Servers []*server.Server
}

// ClientURLs returns every server's client URL.
func (c *StockCluster) ClientURLs() []string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.ClientURL()
	}
	return urls
}

// URL returns the client URLs joined by commas, as --nats takes them.
func (c *StockCluster) URL() string { return strings.Join(c.ClientURLs(), ",") }

// StartStock starts n nats-server nodes with default options plus
// JetStream on free loopback ports, each storing under its own temporary
// directory; with n > 1 they form a plain route cluster. It waits for a
// JetStream meta leader seen by every node, and shuts the servers down when
// the test ends.
func StartStock(t testing.TB, n int) *StockCluster {
	t.Helper()
	dir := t.TempDir()
	clientPort := FreePortRange(t, n)
	var routes []*url.URL
	routePort := 0
	if n > 1 {
		routePort = FreePortRange(t, n)
		for i := range n {
			routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", routePort+i)})
		}
	}
	c := &StockCluster{}
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("s%d", i+1),
			Host:       "127.0.0.1",
			Port:       clientPort + i,
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprintf("s%d", i+1)),
			NoSigs:     true,
		}
		if n > 1 {
			opts.Cluster = server.ClusterOpts{Name: "stock", Host: "127.0.0.1", Port: routePort + i}
			opts.Routes = routes
		}
		s, err := server.NewServer(opts)
		require.NoError(t, err, "new server s%d", i+1)
		go s.Start()
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		require.True(t, s.ReadyForConnections(ReadyTimeout), "server s%d ready for connections", i+1)
		c.Servers = append(c.Servers, s)
	}
	if n == 1 {
		return c // a lone server is its own JetStream, no election
	}
	Eventually(t, ReadyTimeout, func() error {
		var leader *server.Server
		for _, s := range c.Servers {
			if s.JetStreamIsLeader() {
				leader = s
			}
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s: meta state not current", s.Name())
			}
		}
		if leader == nil {
			return errors.New("no meta leader")
		}
		// Only the leader answers, with the peers it has heard from.
		if peers := leader.JetStreamClusterPeers(); len(peers) != n {
			return fmt.Errorf("meta leader %s sees peers %v", leader.Name(), peers)
		}
		return nil
	})
	return c
}
