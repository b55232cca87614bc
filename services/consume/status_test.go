package consume

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// TestStatusLag holds back one topic's events with a failing handler: the
// status shows exactly those events as the lag of that topic's partition,
// with their age, while every other partition (those whose last events
// came long before and those that never had any) shows none. Once the handler applies them,
// the lag is gone. Unknown groups are refused.
func TestStatusLag(t *testing.T) {
	e := newGroupEnv(t)
	ctx := clustertest.Context(t, 2*time.Minute)

	_, err := Status(ctx, e.js, e.store, "nosuch")
	require.ErrorIs(t, err, ErrUnknownGroup)
	_, err = Status(ctx, e.js, e.store, "bad.name>")
	require.ErrorIs(t, err, ErrUnknownGroup)
	groups, err := Groups(ctx, e.store)
	require.NoError(t, err)
	require.Empty(t, groups)

	const stuck = "stuck"
	ps := Partition(stuck, DefaultPartitions)
	var topics []string // topics of other partitions
	for i := 0; len(topics) < 8; i++ {
		if tp := fmt.Sprintf("t%d", i); Partition(tp, DefaultPartitions) != ps {
			topics = append(topics, tp)
		}
	}
	var hold atomic.Bool
	hold.Store(true)
	h := func(tx *txn.Tx, ev replicator.Event) error {
		if hold.Load() && ev.Subject == streams.EventsPrefix+stuck {
			return errors.New("held back")
		}
		return count(tx, ev)
	}
	e.start(t, "lag", "m1", h)
	e.publishPlain(t, topics, 0, 10)
	e.waitApplied(t, topics, counter{N: 10}, time.Minute)

	before := time.Now()
	e.publishPlain(t, []string{stuck}, 0, 5)

	var st GroupStatus
	clustertest.Eventually(t, time.Minute, func() error {
		if st, err = Status(ctx, e.js, e.store, "lag"); err != nil {
			return err
		}
		for _, p := range st.PerPartition {
			want := int64(0)
			if p.Partition == ps {
				want = 5
			}
			if p.LagEvents != want || !p.Exact {
				return fmt.Errorf("partition %d: lag %d events (exact %v), want %d", p.Partition, p.LagEvents, p.Exact, want)
			}
		}
		return nil
	})
	require.Equal(t, []string{"m1"}, st.Members)
	require.Equal(t, DefaultPartitions, st.Partitions)
	require.Equal(t, []string{streams.EventsPrefix + ">"}, st.Filter)
	require.EqualValues(t, 5, st.LagEvents)
	require.True(t, st.Exact)
	p := st.PerPartition[ps]
	require.Equal(t, "m1", p.Owner)
	require.Equal(t, "m1", p.Assigned)
	require.NotZero(t, p.Epoch)
	require.GreaterOrEqual(t, p.LagMessages, uint64(5), "messages at or after the stuck events")
	require.Greater(t, p.LagSeconds, 0.0)
	require.LessOrEqual(t, p.LagSeconds, time.Since(before).Seconds()+1)
	require.Equal(t, p.LagSeconds, st.LagSeconds)
	for _, q := range st.PerPartition {
		if q.Partition != ps {
			require.Zero(t, q.LagSeconds, "partition %d", q.Partition)
		}
	}
	info, err := e.js.Stream(ctx, streams.Events)
	require.NoError(t, err)
	require.Equal(t, info.CachedInfo().State.LastSeq, st.Head)

	groups, err = Groups(ctx, e.store)
	require.NoError(t, err)
	require.Equal(t, []string{"lag"}, groups)

	// The same figures as metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(e.js, e.store, time.Millisecond, clustertest.Logger()))
	part := strconv.Itoa(ps)
	clustertest.Eventually(t, time.Minute, func() error {
		g := gather(t, reg)
		if got := g[`platform_consumer_lag_events{group="lag",partition="`+part+`"}`]; got != 5 {
			return fmt.Errorf("lag of partition %s: %v events, want 5", part, got)
		}
		return nil
	})
	g := gather(t, reg)
	require.Greater(t, g[`platform_consumer_lag_seconds{group="lag",partition="`+part+`"}`], 0.0)
	require.Zero(t, g[`platform_consumer_lag_events{group="lag",partition="`+strconv.Itoa((ps+1)%DefaultPartitions)+`"}`])
	require.Equal(t, 1.0, g[`platform_consumer_members{group="lag"}`])
	require.Equal(t, float64(DefaultPartitions), g[`platform_consumer_owned_partitions{group="lag",member="m1"}`])
	require.Zero(t, g[`platform_consumer_unowned_partitions{group="lag"}`])
	require.Equal(t, 1.0, g[`platform_consumer_lag_exact{group="lag"}`])
	require.Equal(t, float64(st.Head), g[`platform_consumer_head_sequence{group="lag"}`])

	hold.Store(false)
	clustertest.Eventually(t, time.Minute, func() error {
		if st, err = Status(ctx, e.js, e.store, "lag"); err != nil {
			return err
		}
		if st.LagEvents != 0 || st.LagSeconds != 0 || !st.Exact {
			return fmt.Errorf("lag %d events, %.1fs (exact %v)", st.LagEvents, st.LagSeconds, st.Exact)
		}
		return nil
	})
}

// gather returns every sample of reg by name{labels} (labels in the
// order of the metric's descriptor).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			name := mf.GetName()
			if len(ls) > 0 {
				name += "{" + strings.Join(ls, ",") + "}"
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			out[name] = v
		}
	}
	return out
}
