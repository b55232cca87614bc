package leaders_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/jsm.go"
	"github.com/nats-io/jsm.go/api"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/balancer/leaders"
)

// TestBalanceLeaders forces every stream leader onto one node of three,
// balances, and wants at most ceil(n/3) leaders per node.
func TestBalanceLeaders(t *testing.T) {
	c, nc, _ := clustertest.Provisioned(t, 3)
	ctx := clustertest.Context(t, 3*time.Minute)
	mgr, err := jsm.New(nc)
	require.NoError(t, err)
	names, err := mgr.StreamNames(nil)
	require.NoError(t, err)
	first := c.Nodes()[0].Name()
	for _, name := range names {
		clustertest.Eventually(t, 30*time.Second, func() error {
			s, err := mgr.LoadStream(name)
			if err != nil {
				return err
			}
			ci, err := s.ClusterInfo()
			if err != nil {
				return err
			}
			if ci.Leader == first {
				return nil
			}
			if ci.Leader != "" {
				_ = s.LeaderStepDown(&api.Placement{Preferred: first})
			}
			return fmt.Errorf("stream %s led by %q", name, ci.Leader)
		})
	}
	before, err := leaders.Placer{}.Counts(nc)
	require.NoError(t, err)
	require.Equal(t, len(names), before[first], "every leader on %s: %v", first, before)

	rep, err := leaders.Placer{}.Balance(ctx, nc, clustertest.Logger())
	require.NoError(t, err)
	limit := (len(names) + 2) / 3
	clustertest.Eventually(t, 30*time.Second, func() error {
		got, err := leaders.Placer{}.Counts(nc)
		if err != nil {
			return err
		}
		total := 0
		for node, n := range got {
			total += n
			if n > limit {
				return fmt.Errorf("node %s leads %d, want at most %d: %v (report %+v)", node, n, limit, got, rep)
			}
		}
		if total != len(names) {
			return fmt.Errorf("%d leaders for %d streams: %v", total, len(names), got)
		}
		return nil
	})
	require.Positive(t, rep.Moved)
}
