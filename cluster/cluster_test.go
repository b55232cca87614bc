package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
)

func TestSingleNodeStarts(t *testing.T) {
	c := clustertest.Start(t, 1)
	nc, js := clustertest.JetStream(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := js.AccountInfo(ctx)
	require.NoError(t, err)
	require.True(t, nc.IsConnected())
}

func TestThreeNodesFormCluster(t *testing.T) {
	c := clustertest.Start(t, 3)
	require.NotEmpty(t, c.MetaLeader())
	require.Equal(t, 3, c.Replicas())
}

// Health says a node lost its quorum the moment its routes close, not
// when a RAFT election times out.
func TestHealthSaysQuorumLostAtOnce(t *testing.T) {
	c := clustertest.Start(t, 3)
	clustertest.Eventually(t, 10*time.Second, func() error {
		if errs := c.Health(); len(errs) > 0 {
			return errors.Join(errs...)
		}
		return nil
	})

	c.StopNode(2)
	for _, err := range c.Health() {
		require.NotContains(t, err.Error(), "JetStream peers", "one node of three stopped keeps the quorum")
	}

	c.StopNode(1)
	stopped := time.Now()
	want := fmt.Sprintf("node %s: connected to 0 of 2 JetStream peers, a quorum needs 2 servers", c.Nodes()[0].Name())
	// The route closes when the peer's socket does: within a second, where
	// a RAFT election takes several.
	clustertest.Eventually(t, time.Second, func() error {
		errs := c.Health()
		for _, err := range errs {
			if strings.Contains(err.Error(), want) {
				return nil
			}
		}
		return fmt.Errorf("health does not say %q: %v", want, errs)
	})
	t.Logf("quorum lost said %s after the second node stopped", time.Since(stopped).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.RestartNode(ctx, 1))
	clustertest.Eventually(t, 10*time.Second, func() error {
		for _, err := range c.Health() {
			if strings.Contains(err.Error(), "JetStream peers") {
				return err
			}
		}
		return nil
	})
}
