package balancer_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

func answeredBy(t *testing.T, data []byte) string {
	t.Helper()
	var got map[string]string
	require.NoError(t, json.Unmarshal(data, &got))
	return got["id"]
}

// TestRouterHedges sends round robin to two instances, one of which gets
// stuck: requests for an idempotent subject sent to it are sent again to
// the other and answered by it, within the hedging budget; a router that
// may not hedge the subject waits for the stuck instance.
func TestRouterHedges(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	nc := clustertest.Connect(t, c)
	var stuck atomic.Bool
	const stall = time.Second
	echo(t, ctx, clustertest.Connect(t, c), nil)
	b := echo(t, ctx, clustertest.Connect(t, c), func() time.Duration {
		if stuck.Load() {
			return stall
		}
		return 0
	})
	const budget = 0.05
	newRouter := func(idempotent string) *balancer.Router {
		r, err := balancer.NewRouter(balancer.RouterOptions{
			Conn: nc, Strategy: balancer.RoundRobin, Discovery: time.Hour,
			Hedge: balancer.HedgeOptions{Idempotent: []string{idempotent}, Budget: budget},
		})
		require.NoError(t, err)
		require.NoError(t, r.Start(ctx))
		t.Cleanup(r.Stop)
		discovered(t, ctx, r, 2)
		return r
	}
	hedging, other := newRouter("demo.>"), newRouter("other.subject")

	// The hedge delay is a quantile of observed latencies: observe some.
	for _, r := range []*balancer.Router{hedging, other} {
		for range 100 {
			_, err := r.Request(ctx, "demo.echo", []byte("x"))
			require.NoError(t, err)
		}
	}
	stuck.Store(true)
	const n = 20 // round robin: n/2 of them to the stuck instance
	fromB := 0
	for range n {
		m, err := hedging.Request(ctx, "demo.echo", []byte("x"))
		require.NoError(t, err)
		if answeredBy(t, m.Data) == b.ID() {
			fromB++
		}
	}
	hedged := hedging.Hedged()
	if hedged == 0 || fromB >= n/2 {
		t.Fatalf("hedged %d, stuck instance answered %d of its %d: want hedges answered by the other", hedged, fromB, n/2)
	}
	if allowed := budget * float64(100+n); float64(hedged) > allowed {
		t.Errorf("hedged %d requests, budget allows %.0f", hedged, allowed)
	}
	// The stuck instance answers fewer than its n/2 less those hedged:
	// while a request waits on it, its oldest one's age leaves it out.

	fromB = 0
	for range 4 {
		m, err := other.Request(ctx, "demo.echo", []byte("x"))
		require.NoError(t, err)
		if answeredBy(t, m.Data) == b.ID() {
			fromB++
		}
	}
	if got := other.Hedged(); got != 0 || fromB != 2 {
		t.Errorf("subject not idempotent: hedged %d, stuck instance answered %d of 4; want 0 and 2", got, fromB)
	}
}

// TestRouterKilledInstance kills one of three instances while clients
// send through the router: only requests in flight on it fail, and no
// other request is lost. If none was in flight, the router forgets it well
// within the detector's detection time (about 0.7 s with 100 ms
// heartbeats): the first request after the kill finds no responders and
// is sent to another instance. If some were, their age, and then their
// 2 s timeout in its latency estimate, keep it from being chosen for a
// few seconds, until a probe finds no responders: nothing is lost
// meanwhile.
func TestRouterKilledInstance(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	nc := clustertest.Connect(t, c)
	work := func() time.Duration { return 2 * time.Millisecond }
	echo(t, ctx, clustertest.Connect(t, c), work)
	echo(t, ctx, clustertest.Connect(t, c), work)
	victimConn := clustertest.Connect(t, c)
	victim := echo(t, ctx, victimConn, work)
	key := streams.MemberKey(victim.MicroName(), victim.ID())
	r, err := balancer.NewRouter(balancer.RouterOptions{Conn: nc, Discovery: time.Hour})
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	t.Cleanup(r.Stop)
	discovered(t, ctx, r, 3)

	var ok atomic.Int64
	var mu sync.Mutex
	var failures []error
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for cctx.Err() == nil {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := r.Request(rctx, "demo.echo", []byte("x"))
				cancel()
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	clustertest.Eventually(t, 30*time.Second, func() error {
		if st := r.Instances()[key]; ok.Load() < 300 || st.Routed == 0 {
			return errors.New("warming up")
		}
		return nil
	})
	victimConn.Close()
	killed := time.Now()
	clustertest.Eventually(t, 20*time.Second, func() error {
		if _, known := r.Instances()[key]; known {
			return errors.New("router still knows the killed instance")
		}
		return nil
	})
	forgotten := time.Since(killed)
	before := ok.Load()
	clustertest.Eventually(t, 30*time.Second, func() error {
		if ok.Load() < before+300 {
			return errors.New("clients not going on")
		}
		return nil
	})
	stop()
	wg.Wait()
	t.Logf("router forgot the killed instance %v after the kill; %d requests failed", forgotten, len(failures))
	if len(failures) == 0 && forgotten > time.Second {
		t.Errorf("router forgot the killed instance after %v, want within the detector's detection time", forgotten)
	}
	for _, err := range failures {
		var ie *balancer.InstanceError
		if !errors.As(err, &ie) || ie.Service != victim.MicroName() || ie.Instance != victim.ID() || !errors.Is(err, balancer.ErrTimeout) {
			t.Errorf("failure not a request in flight on the killed instance: %v", err)
		}
	}
	if len(failures) > 4 {
		t.Errorf("%d requests failed, want at most the 4 clients' requests in flight", len(failures))
	}
}
