package clusterbench_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/cluster/clusterbench"
	"github.com/platform/platform/cluster/clustertest"
)

func TestElectionAndReplicationReport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tg, err := target.Open(ctx, target.Options{Nodes: 3, Logger: clustertest.Logger()})
	require.NoError(t, err)
	defer tg.Close()

	rows, err := clusterbench.Election(ctx, tg, clusterbench.ElectionOptions{Rounds: 2, StopRounds: 1})
	require.NoError(t, err)
	want := map[string]int64{"stepdown new leader": 2, "stepdown publish stall": 2, "node stop new leader": 1, "node stop first publish": 1}
	require.Len(t, rows, len(want))
	for _, r := range rows {
		if n, ok := want[r.Name]; !ok || r.Events != n {
			t.Errorf("row %q measured %d rounds, want %d", r.Name, r.Events, want[r.Name])
		}
		if r.Name == "stepdown new leader" && r.P50MS <= 0 {
			t.Errorf("a step-down took no time: %+v", r)
		}
	}

	rows, err = clusterbench.Replication(ctx, tg, "test", clusterbench.ReplicationOptions{Replicas: []int{1, 3}, Messages: 50, Duration: 200 * time.Millisecond})
	require.NoError(t, err)
	require.Len(t, rows, 2)
	for _, r := range rows {
		if r.Events != 50 || r.P50MS <= 0 || r.Extra["pipelined_per_s"] <= 0 {
			t.Errorf("row %+v: want 50 timed publishes and a pipelined rate", r)
		}
	}
}
