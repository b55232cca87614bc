package cluster_test

import (
	"context"
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
