package natsconn_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/natsconn"
)

func TestPoolConnectionPerNodeWithTLSAndFailover(t *testing.T) {
	certs := clustertest.NewCerts(t, "platform")
	c := clustertest.StartWith(t, cluster.Options{Nodes: 3, TLS: cluster.TLS{Cert: certs.Cert, Key: certs.Key, CA: certs.CA}})
	urls := c.ClientURLs()
	p, err := natsconn.OpenPool(natsconn.Options{URL: strings.Join(urls, ","), Name: "pool", CA: certs.CA, ReconnectWait: 20 * time.Millisecond, ReconnectJitter: 20 * time.Millisecond})
	require.NoError(t, err)
	defer p.Close()

	require.Len(t, p.Conns(), 3)
	for i, nc := range p.Conns() {
		if got := nc.ConnectedUrl(); got != urls[i] {
			t.Errorf("connection %d is on %s, want its own node %s", i, got, urls[i])
		}
		if !nc.TLSRequired() {
			t.Errorf("connection %d is not TLS", i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, h := range p.Health(ctx) {
		if h.Err != nil || h.RTT <= 0 {
			t.Errorf("health %+v: want a positive round trip", h)
		}
	}
	seen := map[string]bool{}
	for range 6 {
		seen[p.Next().Opts.Name] = true
	}
	require.Len(t, seen, 3, "Next goes round every connection")

	// The first node stops: its connection fails over to another node.
	c.StopNode(0)
	clustertest.Eventually(t, 20*time.Second, func() error {
		nc := p.Conns()[0]
		if !nc.IsConnected() || nc.ConnectedUrl() == urls[0] {
			return fmt.Errorf("connection 1 on %q, connected %v", nc.ConnectedUrl(), nc.IsConnected())
		}
		return nil
	})
	h := natsconn.Check(ctx, p.Conns()[0])
	require.NoError(t, h.Err, "health after failover")
}

func TestOptionsRefuseMixedCredentials(t *testing.T) {
	_, err := natsconn.Connect(natsconn.Options{Creds: "a.creds", NkeySeed: "a.nk"})
	require.ErrorContains(t, err, "one of")
	_, err = natsconn.Connect(natsconn.Options{Cert: "c.pem"})
	require.ErrorContains(t, err, "both cert and key")
}
