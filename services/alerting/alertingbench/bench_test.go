package alertingbench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/bench/target"
)

func openTarget(t *testing.T) *target.Target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tg, err := target.Open(ctx, target.Options{Nodes: 1})
	require.NoError(t, err)
	t.Cleanup(tg.Close)
	return tg
}

// TestStormSmall: a small storm is notified once per group, each listing
// every alert of its group.
func TestStormSmall(t *testing.T) {
	tg := openTarget(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := RunStorm(ctx, tg, StormOptions{Instances: 300, Services: 3, Spread: time.Second, GroupWait: 3 * time.Second})
	require.NoError(t, err)
	require.EqualValues(t, 3, r.Extra["notifications"], "one notification per group: %v", r.Extra)
	require.EqualValues(t, 300, r.Extra["alerts_notified"], "every death in its group's notification")
	require.Positive(t, r.Extra["last_out_after_last_death_s"])
}

func TestPostSmall(t *testing.T) {
	tg := openTarget(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rs, err := MeasurePost(ctx, tg, PostOptions{Alerts: 2000, Batch: 100, Clients: 2})
	require.NoError(t, err)
	require.NotEmpty(t, rs)
	require.EqualValues(t, 2000, rs[0].Events)
	if FindAlertmanager() != "" {
		require.Len(t, rs, 2, "side by side with the installed Alertmanager")
		require.Positive(t, rs[0].Extra["x_alertmanager"])
	}
}
