package balancer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

// pausable returns an echo delay whose handler blocks while paused is
// set, until release is called: the instance stops answering, as one
// stopped with SIGSTOP does, while its connection stays up. Register
// release with t.Cleanup after starting the instance, so it runs before
// the instance's own cleanup waits for its handlers.
func pausable(paused *atomic.Bool) (delay func() time.Duration, release func()) {
	ch := make(chan struct{})
	return func() time.Duration {
		if paused.Load() {
			<-ch
		}
		return 0
	}, func() { close(ch) }
}

// stuckService starts micro service platform-<name> whose endpoint
// <name>.get never answers before the test ends.
func stuckService(t *testing.T, ctx context.Context, nc *nats.Conn, name string) *service.Service {
	t.Helper()
	release := make(chan struct{})
	svc, err := service.New(service.Options{
		Conn: nc, Name: name, HeartbeatInterval: 100 * time.Millisecond,
		Endpoints: []service.Endpoint{{
			Name: "get", Subject: name + ".get", Concurrency: 4096,
			Handler: service.Func(func(context.Context, *service.Request) (any, error) {
				<-release
				return nil, nil
			}),
		}},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	t.Cleanup(func() { close(release); cancel(); <-done })
	select {
	case <-svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("stuck service not ready")
	}
	return svc
}

// load runs clients request loops through r for d, each request with
// timeout, and returns how many were sent and how many failed.
func load(ctx context.Context, r *balancer.Router, clients int, d, timeout time.Duration) (sent, failed int64) {
	var s, f atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				rctx, cancel := context.WithTimeout(ctx, timeout)
				_, err := r.Request(rctx, "demo.echo", []byte("x"))
				cancel()
				s.Add(1)
				if err != nil {
					f.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return s.Load(), f.Load()
}

// TestRouterTwoInstancesOnePaused pauses one of two instances. Whether
// WEIGHTS already says so (weight 0, as once the detector suspects it) or
// not yet (the router sees only that it stopped answering), fewer than 1%
// of the requests sent after the pause fail: the router sends to the one
// healthy instance's own subject instead of the queue group, and leaves
// out an instance whose oldest unanswered request is older than its
// peer's P99.
func TestRouterTwoInstancesOnePaused(t *testing.T) {
	for _, tt := range []struct {
		name    string
		weight0 bool
		// pause is how long clients send during the pause: the requests
		// in flight on the instance when it paused are lost, and the
		// share they make depends on how many more are sent.
		pause time.Duration
	}{
		{"weight 0", true, 2 * time.Second},
		{"weight unchanged", false, 5 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, nc, js := clustertest.Provisioned(t, 1)
			ctx := clustertest.Context(t, 2*time.Minute)
			var paused atomic.Bool
			echo(t, ctx, clustertest.Connect(t, c), nil)
			delay, release := pausable(&paused)
			victim := echo(t, ctx, clustertest.Connect(t, c), delay)
			t.Cleanup(release)
			key := streams.MemberKey(victim.MicroName(), victim.ID())
			kv, err := js.KeyValue(ctx, streams.BucketWeights)
			require.NoError(t, err)
			r, err := balancer.NewRouter(balancer.RouterOptions{Conn: nc, Weights: kv, Discovery: time.Hour})
			require.NoError(t, err)
			require.NoError(t, r.Start(ctx))
			t.Cleanup(r.Stop)
			discovered(t, ctx, r, 2)
			// Warm up: both instances answer and have a P99.
			if _, failed := load(ctx, r, 4, 500*time.Millisecond, 2*time.Second); failed > 0 {
				t.Fatalf("%d requests failed before the pause", failed)
			}

			paused.Store(true)
			if tt.weight0 {
				b, err := json.Marshal(balancer.Record{Service: victim.MicroName(), Instance: victim.ID(), Weight: 0, Reason: "unhealthy"})
				require.NoError(t, err)
				_, err = kv.Put(ctx, key, b)
				require.NoError(t, err)
				clustertest.Eventually(t, 10*time.Second, func() error {
					if w := r.Instances()[key].Weight; w != 0 {
						return fmt.Errorf("router sees weight %v", w)
					}
					return nil
				})
			}
			sent, failed := load(ctx, r, 8, tt.pause, time.Second)
			t.Logf("%d of %d requests failed after the pause", failed, sent)
			if sent < 200 {
				t.Fatalf("only %d requests completed in %v", sent, tt.pause)
			}
			if share := float64(failed) / float64(sent); share >= 0.01 {
				t.Errorf("%d of %d requests (%.1f%%) failed, want under 1%%", failed, sent, share*100)
			}
		})
	}
}

// TestProxyNoHealthyInstance marks every instance of a service suspect:
// route.<subject> answers unavailable with retry_after_ms at once, without
// waiting for the (paused) instances or the queue group.
func TestProxyNoHealthyInstance(t *testing.T) {
	c, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	var paused atomic.Bool
	paused.Store(true)
	delay, release := pausable(&paused)
	a := echo(t, ctx, clustertest.Connect(t, c), delay)
	b := echo(t, ctx, clustertest.Connect(t, c), delay)
	t.Cleanup(release)
	bal := startBalancer(t, ctx, nc, nil)
	members, err := js.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err)
	for _, s := range []*service.Service{a, b} {
		m := membership.Member{Service: s.MicroName(), Instance: s.ID(), State: membership.Suspect, LastSeen: time.Now()}
		v, err := json.Marshal(m)
		require.NoError(t, err)
		_, err = members.Put(ctx, m.Key(), v)
		require.NoError(t, err)
	}
	clustertest.Eventually(t, 10*time.Second, func() error {
		insts := bal.Router().Instances()
		for _, s := range []*service.Service{a, b} {
			if st, ok := insts[streams.MemberKey(s.MicroName(), s.ID())]; !ok || st.Weight != 0 {
				return fmt.Errorf("router sees %s at weight %v (known %v); balancer: %+v", s.ID(), st.Weight, ok, bal.Status())
			}
		}
		return nil
	})
	client := clustertest.Connect(t, c)
	var took []time.Duration
	for range 5 {
		start := time.Now()
		m, err := client.Request(streams.RouteSubject("demo.echo"), []byte("x"), 5*time.Second)
		took = append(took, time.Since(start))
		require.NoError(t, err)
		e := service.ParseError(service.JSON, m.Data)
		require.NotNil(t, e, "answer %s", m.Data)
		require.Equal(t, service.CodeUnavailable, e.Code, "answer %s", m.Data)
		var body struct {
			Error struct {
				RetryAfterMS float64 `json:"retry_after_ms"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(m.Data, &body))
		if body.Error.RetryAfterMS <= 0 {
			t.Errorf("retry_after_ms %v, want > 0 (%s)", body.Error.RetryAfterMS, m.Data)
		}
	}
	slices.Sort(took)
	t.Logf("unavailable after %v", took)
	if took[len(took)/2] > 50*time.Millisecond || took[len(took)-1] > time.Second {
		t.Errorf("unavailable after %v, want under 50 ms (median)", took)
	}
}

// TestProxyStuckServiceBesideHealthy floods route.<subject> with 1,500
// requests to a service that never answers: those past its in-flight
// limit are refused at once, the healthy service's routed P99 stays what
// it was while the rest wait, and those are answered at their deadline
// (the route timeout), not later.
func TestProxyStuckServiceBesideHealthy(t *testing.T) {
	c, nc, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	echo(t, ctx, clustertest.Connect(t, c), nil)
	stuck := stuckService(t, ctx, clustertest.Connect(t, c), "stuck")
	const (
		timeout = 4 * time.Second
		limit   = 100
		n       = 1500
	)
	bal := startBalancer(t, ctx, nc, func(o *balancer.Options) {
		o.Router.Discovery = time.Hour // the view at start: both services
		o.Router.Timeout = timeout
		o.Router.MaxInFlight, o.Router.MaxInFlightPerInstance = 2*limit, limit
	})
	client := clustertest.Connect(t, c)
	p99 := func() time.Duration {
		var d []time.Duration
		for range 200 {
			start := time.Now()
			m, err := client.Request(streams.RouteSubject("demo.echo"), []byte("x"), 10*time.Second)
			took := time.Since(start)
			require.NoError(t, err)
			require.Empty(t, errorCode(t, m), "answer %s", m.Data)
			d = append(d, took)
		}
		slices.Sort(d)
		return d[len(d)*99/100]
	}
	discovered(t, ctx, bal.Router(), 2) // the echo and the stuck service
	before := p99()

	flood := clustertest.Connect(t, c)
	var (
		mu                  sync.Mutex
		codes               = map[string]int{}
		lastRefused, lastTO time.Time
	)
	inbox := nats.NewInbox()
	sub, err := flood.Subscribe(inbox+".*", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		code := errorCode(t, m)
		codes[code]++
		switch code {
		case service.CodeUnavailable:
			lastRefused = time.Now()
		case service.CodeTimeout:
			lastTO = time.Now()
		}
	})
	require.NoError(t, err)
	require.NoError(t, sub.SetPendingLimits(-1, -1))
	for i := range n {
		require.NoError(t, flood.PublishRequest(streams.RouteSubject("stuck.get"), fmt.Sprintf("%s.%d", inbox, i), nil))
	}
	require.NoError(t, flood.Flush())
	answered := func() (int, int, map[string]int) {
		mu.Lock()
		defer mu.Unlock()
		return codes[service.CodeUnavailable], codes[service.CodeTimeout], maps.Clone(codes)
	}
	// sent is how many flood requests the proxy sent to the stuck
	// instance, and maxOut the most it saw in flight there at once. On a
	// slow machine (load average 13) the proxy took longer than the route
	// timeout over the flood, and the slots its first requests freed by
	// timing out were taken again: the limit is on requests in flight at
	// once, not on the flood.
	stuckKey := streams.MemberKey(stuck.MicroName(), stuck.ID())
	var maxOut int64
	sent := func() int {
		in := bal.Router().Instances()[stuckKey]
		maxOut = max(maxOut, in.InFlight)
		return int(in.Routed)
	}
	clustertest.Eventually(t, 30*time.Second, func() error {
		if refused, _, all := answered(); refused+sent() < n {
			return fmt.Errorf("%d refused and %d sent to the stuck instance of %d requests: %v", refused, sent(), n, all)
		}
		return nil
	})
	during := p99()
	clustertest.Eventually(t, timeout+10*time.Second, func() error {
		if refused, timedOut, all := answered(); refused+timedOut < n {
			sent()
			return fmt.Errorf("%d of %d stuck requests answered: %v", refused+timedOut, n, all)
		}
		return nil
	})
	_, _, all := answered()
	admitted := sent()
	mu.Lock()
	late := lastTO.Sub(lastRefused)
	mu.Unlock()
	t.Logf("healthy P99 %v before, %v beside %d stuck requests; stuck ones answered %v, the last timeout %v after the last refusal",
		before, during, limit, all, late)
	// Before the route endpoint stopped blocking, the healthy service
	// waited out the stuck requests' timeout (4 s here); the margin is
	// for a loaded machine's scheduler.
	if during > max(3*before, before+250*time.Millisecond) {
		t.Errorf("healthy service's routed P99 %v beside the stuck one, %v before", during, before)
	}
	if maxOut > limit || admitted < limit {
		t.Errorf("stuck instance had up to %d requests in flight and was sent %d, want its limit %d filled and never passed", maxOut, admitted, limit)
	}
	if admitted > limit {
		t.Logf("the flood took the proxy longer than the %v route timeout: %d requests sent to the stuck instance as slots freed", timeout, admitted)
	}
	if all[service.CodeTimeout] != admitted || all[service.CodeUnavailable] != n-admitted {
		t.Errorf("stuck requests answered %v, want %d timeouts (those sent) and %d unavailable", all, admitted, n-admitted)
	}
	if late > timeout+time.Second {
		t.Errorf("last stuck request timed out %v after the last was admitted, want by its %v deadline", late, timeout)
	}
}

// TestProxyRefusesSystemSubjects: route.<subject> forwards only to
// endpoints of discovered micro services. Server, JetStream, KV and inbox
// subjects are refused with bad_request, and a plain subscriber that is
// no micro service gets nothing.
func TestProxyRefusesSystemSubjects(t *testing.T) {
	c, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	echo(t, ctx, clustertest.Connect(t, c), nil)
	startBalancer(t, ctx, nc, nil)
	client := clustertest.Connect(t, c)
	var plain atomic.Int64
	sub, err := clustertest.Connect(t, c).Subscribe("plain.subject", func(m *nats.Msg) {
		plain.Add(1)
		_ = m.Respond([]byte("reached"))
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	tests := []struct{ subject, code string }{
		{"$JS.API.INFO", service.CodeBadRequest},
		{"$JS.API.STREAM.DELETE." + streams.Events, service.CodeBadRequest},
		{"$SYS.REQ.SERVER.PING", service.CodeBadRequest},
		{"$KV." + streams.BucketWeights + ".x", service.CodeBadRequest},
		{"$SRV.INFO", service.CodeBadRequest},
		{"_INBOX.abc.def", service.CodeBadRequest},
		{"plain.subject", service.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			m, err := client.Request(streams.RouteSubject(tt.subject), []byte("{}"), 5*time.Second)
			require.NoError(t, err)
			if got := errorCode(t, m); got != tt.code {
				t.Errorf("code = %q, want %q (%s)", got, tt.code, m.Data)
			}
		})
	}
	if n := plain.Load(); n != 0 {
		t.Errorf("plain subscriber reached %d times through route.", n)
	}
	_, err = js.Stream(ctx, streams.Events)
	require.False(t, errors.Is(err, jetstream.ErrStreamNotFound), "stream %s deleted through route.", streams.Events)
	// The echo service is still routed.
	m, err := client.Request(streams.RouteSubject("demo.echo"), []byte("x"), 5*time.Second)
	require.NoError(t, err)
	require.Empty(t, errorCode(t, m), "answer %s", m.Data)
}
