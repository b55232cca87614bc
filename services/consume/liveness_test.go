package consume

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

// TestGroupFollowsTheDetector: with the platform's detector running, a
// member whose heartbeats stop leaves the group when the detector
// declares it dead, long before its membership TTL (30 s here); it comes
// back when its heartbeats resume; and a new run under the name of a run
// the detector saw leave joins at once.
func TestGroupFollowsTheDetector(t *testing.T) {
	e := newGroupEnv(t)
	const group = "hb"
	deaths := e.runDetector(t, group)
	start := func(id string) *running {
		return e.run(t, Options{Group: group, Member: id, Handler: count,
			TTL: 30 * time.Second, Tick: 100 * time.Millisecond})
	}
	listed := func(want ...string) func() error {
		return func() error {
			a, err := e.assignment(t.Context(), group)
			if err != nil || !slices.Equal(a.Members, want) {
				return fmt.Errorf("assignment lists %v (%v), want %v", a.Members, err, want)
			}
			return nil
		}
	}
	a, _ := start("a"), start("b")
	clustertest.Eventually(t, 30*time.Second, listed("a", "b"))
	// The detector has seen a: it cannot declare dead what it never saw.
	members, err := e.js.KeyValue(t.Context(), streams.BucketMembers)
	require.NoError(t, err)
	clustertest.Eventually(t, 30*time.Second, func() error {
		_, err := members.Get(t.Context(), HeartbeatService(group)+"."+a.instance)
		return err
	})

	// a stops heartbeating and renewing: dropped once declared dead.
	paused := time.Now()
	a.pauseKeeper.Store(true)
	clustertest.Eventually(t, 20*time.Second, listed("b"))
	dropped := time.Since(paused)
	at, ok := deaths.of("a")
	require.True(t, ok, "the detector never declared a dead")
	t.Logf("a dropped %s after its heartbeats stopped (declared dead after %s; membership TTL 30s)",
		dropped.Round(time.Millisecond), at.Sub(paused).Round(time.Millisecond))

	// Its heartbeats resume: the detector says alive, and a is back.
	a.pauseKeeper.Store(false)
	clustertest.Eventually(t, 20*time.Second, listed("a", "b"))

	// a stops (its last heartbeat says it leaves); a new run named a
	// joins although the detector's record of the old run says left.
	a.stop(t)
	clustertest.Eventually(t, 20*time.Second, listed("b"))
	start("a")
	clustertest.Eventually(t, 20*time.Second, listed("a", "b"))
}
