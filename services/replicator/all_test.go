package replicator

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// TestAllWaiterCheck: one info request per stream settles every event of
// that stream; events of a stream whose replicas lag wait, and fail with
// ErrReplicasBehind (their Ack kept) once the deadline passed.
func TestAllWaiterCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lag := map[string]uint64{"CAUGHT": 0, "BEHIND": 5}
		asked := map[string]int{}
		outcomes := map[*pending]error{}
		acks := map[*pending]Ack{}
		reg := prometheus.NewRegistry()
		m := newMetrics(reg)
		a := newAllWaiter(allOptions{
			info: func(_ context.Context, stream string) (*jetstream.StreamInfo, error) {
				asked[stream]++
				return &jetstream.StreamInfo{
					Config: jetstream.StreamConfig{Replicas: 3},
					Cluster: &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{
						{Name: "n2", Current: true},
						{Name: "n3", Current: true, Lag: lag[stream]},
					}},
				}, nil
			},
			resolve: func(e *pending, ack Ack, err error) {
				outcomes[e] = err
				acks[e] = ack
			},
			deadline: time.Minute,
			poll:     time.Millisecond,
			failed:   m.errors,
		})
		c1, c2, c3, b1 := &pending{}, &pending{}, &pending{}, &pending{}
		a.add("CAUGHT", 1, []*pending{c1, c2}, []Ack{{Seq: 1}, {Seq: 1, Index: 1}})
		a.add("CAUGHT", 2, []*pending{c3}, []Ack{{Seq: 2}})
		a.add("BEHIND", 7, []*pending{b1}, []Ack{{Seq: 7}})

		a.check()
		require.Equal(t, map[string]int{"CAUGHT": 1, "BEHIND": 1}, asked, "one request per stream and check")
		for _, e := range []*pending{c1, c2, c3} {
			got, ok := outcomes[e]
			require.True(t, ok, "an event of a caught-up stream is resolved")
			require.NoError(t, got)
		}
		require.Equal(t, 1, acks[c2].Index, "each event keeps its own Ack")
		_, ok := outcomes[b1]
		require.False(t, ok, "an event of a lagging stream waits")

		time.Sleep(2 * time.Minute)
		a.check()
		require.ErrorIs(t, outcomes[b1], ErrReplicasBehind)
		require.Equal(t, uint64(7), acks[b1].Seq, "the quorum Ack stays valid")
		require.Equal(t, 1.0, counterValue(t, reg, "platform_replicator_errors_total", "replicas_behind"))
	})
}

// TestAllWaiterFollowersCatchUpApart: an event is settled once each
// follower has shown lag 0 in some check after its ack, even when they
// never do in the same check; a check from before the ack does not count.
func TestAllWaiterFollowersCatchUpApart(t *testing.T) {
	lags := [][2]uint64{{0, 4}, {3, 0}, {0, 2}, {5, 0}}
	check := 0
	var settled []int
	a := newAllWaiter(allOptions{
		info: func(context.Context, string) (*jetstream.StreamInfo, error) {
			l := lags[check]
			return &jetstream.StreamInfo{
				Config: jetstream.StreamConfig{Replicas: 3},
				Cluster: &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{
					{Name: "n2", Current: l[0] == 0, Lag: l[0]},
					{Name: "n3", Current: l[1] == 0, Lag: l[1]},
				}},
			}, nil
		},
		resolve: func(e *pending, ack Ack, err error) {
			require.NoError(t, err)
			settled = append(settled, int(ack.Seq))
		},
		deadline: time.Minute,
		failed:   newMetrics(prometheus.NewRegistry()).errors,
	})
	a.add("S", 1, []*pending{{}}, []Ack{{Seq: 1}})
	a.check() // n2 caught up, n3 behind
	require.Empty(t, settled)
	check++
	a.add("S", 2, []*pending{{}}, []Ack{{Seq: 2}})
	a.check() // n3 caught up: seq 1 has seen both since its ack
	require.Equal(t, []int{1}, settled)
	check++
	a.check() // n2 caught up again: seq 2 now has both since its ack
	require.Equal(t, []int{1, 2}, settled)
}
