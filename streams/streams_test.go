package streams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

func TestEnsure(t *testing.T) {
	c := clustertest.Start(t, 1)
	_, js := clustertest.JetStream(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := streams.All(1)

	res, err := streams.Ensure(ctx, js, specs)
	require.NoError(t, err)
	for _, r := range res {
		require.Equal(t, streams.Created, r.Action, r.Stream)
	}

	t.Run("idempotent", func(t *testing.T) {
		res, err := streams.Ensure(ctx, js, specs)
		require.NoError(t, err)
		for _, r := range res {
			require.Equal(t, streams.Unchanged, r.Action, r.Stream)
		}
	})

	t.Run("kv buckets work with the kv API", func(t *testing.T) {
		kv, err := js.KeyValue(ctx, streams.BucketState)
		require.NoError(t, err)
		_, err = kv.Put(ctx, "k", []byte("v"))
		require.NoError(t, err)
		e, err := kv.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, "v", string(e.Value()))
		state, err := js.Stream(ctx, streams.KVStream(streams.BucketState))
		require.NoError(t, err)
		cfg := state.CachedInfo().Config
		require.True(t, cfg.AllowAtomicPublish, "STATE allows atomic batches")
		require.True(t, cfg.AllowMsgTTL, "STATE allows message TTLs")
	})

	t.Run("drift is updated", func(t *testing.T) {
		s, err := js.Stream(ctx, streams.Events)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		cfg.Description = "changed by hand"
		cfg.AllowDirect = false
		_, err = js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
		res, err := streams.Ensure(ctx, js, specs)
		require.NoError(t, err)
		require.Equal(t, streams.Updated, res[0].Action)
		s, err = js.Stream(ctx, streams.Events)
		require.NoError(t, err)
		require.True(t, s.CachedInfo().Config.AllowDirect)
	})

	t.Run("an EVENTS stream with store compression keeps its data without it", func(t *testing.T) {
		s, err := js.Stream(ctx, streams.Events)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		cfg.Compression = jetstream.S2Compression // as earlier versions made it
		_, err = js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
		_, err = js.Publish(ctx, "events.compressed", []byte("kept"))
		require.NoError(t, err)
		res, err := streams.Ensure(ctx, js, specs)
		require.NoError(t, err)
		require.Equal(t, streams.Updated, res[0].Action)
		s, err = js.Stream(ctx, streams.Events)
		require.NoError(t, err)
		require.Equal(t, jetstream.NoCompression, s.CachedInfo().Config.Compression)
		m, err := s.GetLastMsgForSubject(ctx, "events.compressed")
		require.NoError(t, err)
		require.Equal(t, "kept", string(m.Data))
	})

	t.Run("an ALERTS stream on alerts.> is narrowed in place", func(t *testing.T) {
		s, err := js.Stream(ctx, streams.Alerts)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		cfg.Subjects = []string{"alerts.>"}
		_, err = js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
		_, err = js.Publish(ctx, "alerts.critical.Old", []byte("{}"))
		require.NoError(t, err)

		res, err := streams.Ensure(ctx, js, specs)
		require.NoError(t, err)
		for _, r := range res {
			if r.Stream == streams.Alerts {
				require.Equal(t, streams.Updated, r.Action)
			}
		}
		s, err = js.Stream(ctx, streams.Alerts)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"alerts.critical.>", "alerts.warning.>", "alerts.info.>"}, info.Config.Subjects)
		require.EqualValues(t, 1, info.State.Msgs, "stored notifications are kept")
		_, err = js.Publish(ctx, "alerts.list", nil)
		require.ErrorIs(t, err, jetstream.ErrNoStreamResponse, "requests to the alerting service are not stored")
	})

	t.Run("immutable change is refused", func(t *testing.T) {
		require.NoError(t, js.DeleteStream(ctx, streams.Alerts))
		mem := jetstream.StreamConfig{Name: streams.Alerts, Subjects: []string{"alerts.>"}, Storage: jetstream.MemoryStorage}
		_, err := js.CreateStream(ctx, mem)
		require.NoError(t, err)
		_, err = streams.Ensure(ctx, js, specs)
		require.Error(t, err)
		require.True(t, errors.Is(err, streams.ErrImmutable), "got %v", err)
		require.Contains(t, err.Error(), "ALERTS")
		s, err := js.Stream(ctx, streams.Alerts)
		require.NoError(t, err)
		require.Equal(t, jetstream.MemoryStorage, s.CachedInfo().Config.Storage, "left untouched")
	})
}

func TestReplicasFollowClusterSize(t *testing.T) {
	for _, n := range []int{0, 1, 3} {
		for _, s := range streams.All(n) {
			want := max(1, n)
			if s.Replicas != want {
				t.Errorf("All(%d): %s has %d replicas, want %d", n, s.Name, s.Replicas, want)
			}
		}
	}
}

// TestProvisionWaitsForPeers: a refusal for want of placement peers is
// retried until the context ends, and the last attempt's error is kept.
func TestProvisionWaitsForPeers(t *testing.T) {
	t.Parallel()
	c := clustertest.Start(t, 3)
	_, js := clustertest.JetStream(t, c)
	spec := streams.All(3)[0]
	spec.Name, spec.Subjects, spec.Replicas = "FIVE", []string{"five.>"}, 5

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := streams.Ensure(ctx, js, []jetstream.StreamConfig{spec})
	var ae *jetstream.APIError
	require.ErrorAs(t, err, &ae, "one attempt")
	require.EqualValues(t, 10005, ae.ErrorCode, "no suitable peers: %v", err)

	start := time.Now()
	var attempts []error
	_, err = streams.Provision(ctx, js, []jetstream.StreamConfig{spec}, func(err error, wait time.Duration) {
		require.Positive(t, wait)
		attempts = append(attempts, err)
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "last attempt", "the last attempt's error is kept")
	require.GreaterOrEqual(t, len(attempts), 2, "attempts until the deadline")
	require.ErrorAs(t, attempts[0], &ae)
	require.EqualValues(t, 10005, ae.ErrorCode)
	require.Greater(t, time.Since(start), time.Second)

	// A spec the cluster can place is provisioned at once.
	spec.Replicas = 3
	gctx, gcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer gcancel()
	res, err := streams.Provision(gctx, js, []jetstream.StreamConfig{spec}, nil)
	require.NoError(t, err)
	require.Equal(t, streams.Created, res[0].Action)
}
