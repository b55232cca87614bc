package balancer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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

// echo starts an instance of micro service platform-demo answering
// demo.echo with its id and the request body, after delay().
func echo(t *testing.T, ctx context.Context, nc *nats.Conn, delay func() time.Duration) *service.Service {
	t.Helper()
	var svc *service.Service
	svc, err := service.New(service.Options{
		Conn: nc, Name: "demo", HeartbeatInterval: 100 * time.Millisecond,
		Endpoints: []service.Endpoint{{
			Name: "echo", Subject: "demo.echo", Concurrency: 64,
			Handler: service.Func(func(_ context.Context, r *service.Request) (any, error) {
				if delay != nil {
					time.Sleep(delay())
				}
				return map[string]string{"id": svc.ID(), "body": string(r.Data()), "subject": r.Subject()}, nil
			}),
		}},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("echo service not ready")
	}
	return svc
}

func startBalancer(t *testing.T, ctx context.Context, nc *nats.Conn, mod func(*balancer.Options)) *balancer.Service {
	t.Helper()
	o := balancer.Options{
		Conn: nc, Logger: clustertest.Logger(), HeartbeatInterval: 100 * time.Millisecond,
		TickInterval: 100 * time.Millisecond, StatsInterval: 500 * time.Millisecond,
		LeaseTTL: time.Second, LeaseRenew: 200 * time.Millisecond, LeaderInterval: -1,
		Router: balancer.RouterOptions{Discovery: 200 * time.Millisecond, DiscoveryWait: 200 * time.Millisecond, Timeout: 2 * time.Second},
	}
	o.Policy = balancer.DefaultPolicy()
	o.Policy.Blackout, o.Policy.SlowStart = 0, 0
	if mod != nil {
		mod(&o)
	}
	b, err := balancer.New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Run(ctx); err != nil {
			t.Errorf("balancer run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-b.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("balancer not ready")
	}
	return b
}

// discovered waits until r knows want instances, looking them up again
// while it knows fewer. One lookup listens for $SRV.INFO answers only
// until they pause for a quarter of DiscoveryWait; on a loaded machine an
// instance's answer can come later and the router's first view misses it.
// The router itself looks again at its next Discovery tick, which the
// tests that keep their view at start (Discovery an hour) never reach.
func discovered(t *testing.T, ctx context.Context, r *balancer.Router, want int) {
	t.Helper()
	clustertest.Eventually(t, 10*time.Second, func() error {
		if n := len(r.Instances()); n >= want {
			if n > want {
				return fmt.Errorf("router knows %d instances, want %d", n, want)
			}
			return nil
		}
		if err := r.Refresh(ctx); err != nil {
			return fmt.Errorf("look up instances: %w", err)
		}
		return fmt.Errorf("router knows %d instances, want %d", len(r.Instances()), want)
	})
}

func errorCode(t *testing.T, m *nats.Msg) string {
	t.Helper()
	e := service.ParseError(service.JSON, m.Data)
	if e == nil {
		return ""
	}
	return e.Code
}

func TestInstanceSubjectsAndProxy(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 3)
	ctx := clustertest.Context(t, 2*time.Minute)
	nc := clustertest.Connect(t, c)
	a := echo(t, ctx, clustertest.Connect(t, c), nil)
	bsvc := echo(t, ctx, clustertest.Connect(t, c), nil)
	bal := startBalancer(t, ctx, nc, nil)

	// Each instance answers on its own subject, and its handler sees the
	// endpoint's subject.
	for _, s := range []*service.Service{a, bsvc} {
		m, err := nc.Request(streams.InstanceSubject(s.MicroName(), s.ID(), "demo.echo"), []byte("x"), 2*time.Second)
		require.NoError(t, err)
		var got map[string]string
		require.NoError(t, json.Unmarshal(m.Data, &got))
		require.Equal(t, s.ID(), got["id"])
		require.Equal(t, "demo.echo", got["subject"])
	}

	// The proxy relays answer and headers unchanged.
	client := clustertest.Connect(t, c)
	var m *nats.Msg
	clustertest.Eventually(t, 10*time.Second, func() error {
		var err error
		req := nats.NewMsg(streams.RouteSubject("demo.echo"))
		req.Data = []byte("hello")
		m, err = client.RequestMsg(req, 2*time.Second)
		if err != nil {
			return err
		}
		if code := errorCode(t, m); code != "" {
			return fmt.Errorf("error %s: %s", code, m.Data)
		}
		return nil
	})
	var got map[string]string
	require.NoError(t, json.Unmarshal(m.Data, &got))
	require.Equal(t, "hello", got["body"])
	require.Equal(t, service.ContentTypeJSON, m.Header.Get(service.ContentTypeHeader))

	// Bad input gets a clear error in the platform's shape.
	tests := []struct {
		name, subject, code string
	}{
		{"unknown subject", streams.RouteSubject("nothing.serves.this"), service.CodeNotFound},
		{"routing a route", streams.RouteSubject("route.demo.echo"), service.CodeBadRequest},
		{"naming an instance", streams.RouteSubject(streams.InstanceSubject("platform-demo", a.ID(), "demo.echo")), service.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := client.Request(tt.subject, []byte("{}"), 5*time.Second)
			require.NoError(t, err)
			if got := errorCode(t, m); got != tt.code {
				t.Errorf("code = %q, want %q (%s)", got, tt.code, m.Data)
			}
		})
	}

	// Requests are spread over both instances and counted in status. The
	// client waits longer than the route's own 2 s timeout, so that on a
	// slow machine the proxy's answer, not the client's deadline, ends
	// the request: with both at 2 s, one routed request at load average
	// 13 ended as a client timeout.
	for range 40 {
		_, err := client.Request(streams.RouteSubject("demo.echo"), []byte("x"), 5*time.Second)
		require.NoError(t, err)
	}
	st := bal.Status()
	var routed int
	for _, in := range st.Instances {
		if in.Service == "platform-demo" {
			routed++
			require.NotZero(t, in.Routed, "instance %s never chosen", in.Instance)
		}
	}
	require.Equal(t, 2, routed)

	// WEIGHTS holds a record per instance that explains itself.
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, streams.BucketWeights)
	require.NoError(t, err)
	clustertest.Eventually(t, 10*time.Second, func() error {
		e, err := kv.Get(ctx, streams.MemberKey(a.MicroName(), a.ID()))
		if err != nil {
			return err
		}
		var rec balancer.Record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return err
		}
		if rec.Weight <= 0 || rec.Reason == "" {
			return fmt.Errorf("record %s", e.Value())
		}
		return nil
	})
}

func TestProxyNoInstance(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	nc := clustertest.Connect(t, c)
	ictx, stop := context.WithCancel(ctx)
	echo(t, ictx, clustertest.Connect(t, c), nil)
	echo(t, ictx, clustertest.Connect(t, c), nil)
	bal := startBalancer(t, ctx, nc, func(o *balancer.Options) {
		o.Router.Discovery = time.Hour // keep the stale view: both instances
	})
	discovered(t, ctx, bal.Router(), 2)
	stop()
	clustertest.Eventually(t, 10*time.Second, func() error {
		m, err := nc.Request(streams.RouteSubject("demo.echo"), []byte("x"), 5*time.Second)
		if err != nil {
			return err
		}
		if code := errorCode(t, m); code != service.CodeUnavailable {
			return fmt.Errorf("code %q (%s), want unavailable", code, m.Data)
		}
		return nil
	})
}

// TestRouterAvoidsSlowInstance injects latency into one of three
// instances: the router sends it far less than its third.
func TestRouterAvoidsSlowInstance(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	nc := clustertest.Connect(t, c)
	fast := func() time.Duration { return time.Millisecond }
	slow := func() time.Duration { return 30 * time.Millisecond }
	echo(t, ctx, clustertest.Connect(t, c), fast)
	echo(t, ctx, clustertest.Connect(t, c), fast)
	slowSvc := echo(t, ctx, clustertest.Connect(t, c), slow)
	r, err := balancer.NewRouter(balancer.RouterOptions{Conn: nc, Discovery: time.Hour})
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	t.Cleanup(r.Stop)

	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 150 {
				m, err := r.Request(ctx, "demo.echo", []byte("x"))
				if err != nil {
					t.Error(err)
					return
				}
				var got map[string]string
				_ = json.Unmarshal(m.Data, &got)
				mu.Lock()
				counts[got["id"]]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	share := float64(counts[slowSvc.ID()]) / 600
	if share > 0.10 {
		t.Errorf("slow instance got %.1f%% of requests (%v), want under 10%% (a third is 33%%)", share*100, counts)
	}
	if len(counts) != 3 {
		t.Logf("instances chosen: %v", counts)
	}
}

func TestRouterErrors(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	nc := clustertest.Connect(t, c)
	r, err := balancer.NewRouter(balancer.RouterOptions{Conn: nc, Timeout: 200 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	t.Cleanup(r.Stop)
	// No deadline on the context: the router's Timeout applies.
	_, err = r.Request(context.Background(), "nothing.here", nil)
	require.True(t, errors.Is(err, balancer.ErrUnknownSubject), "err = %v", err)

	// A queue member that never answers: a timeout, not a hang.
	sub, err := nc.QueueSubscribe("silent.endpoint", "q", func(*nats.Msg) {})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())
	_, err = r.Request(context.Background(), "silent.endpoint", nil)
	require.True(t, errors.Is(err, balancer.ErrTimeout), "err = %v", err)
}

// TestOneWeightWriter runs two balancers: one writes WEIGHTS at a time,
// and the other takes over when it stops.
func TestOneWeightWriter(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 3)
	ctx := clustertest.Context(t, 2*time.Minute)
	echo(t, ctx, clustertest.Connect(t, c), nil)
	actx, stopA := context.WithCancel(ctx)
	bctx, stopB := context.WithCancel(ctx)
	t.Cleanup(stopA)
	t.Cleanup(stopB)
	a := startBalancer(t, actx, clustertest.Connect(t, c), nil)
	b := startBalancer(t, bctx, clustertest.Connect(t, c), nil)
	clustertest.Eventually(t, 10*time.Second, func() error {
		if a.Active() == b.Active() {
			return fmt.Errorf("active: a %v, b %v; want exactly one", a.Active(), b.Active())
		}
		return nil
	})
	// Watch for a while: never both.
	for range 50 {
		require.False(t, a.Active() && b.Active(), "both balancers write WEIGHTS")
		time.Sleep(20 * time.Millisecond)
	}
	standby, stopActive := b, stopA
	if b.Active() {
		standby, stopActive = a, stopB
	}
	nc := clustertest.Connect(t, c)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, streams.BucketWeights)
	require.NoError(t, err)
	stopActive()
	clustertest.Eventually(t, 10*time.Second, func() error {
		if !standby.Active() {
			return errors.New("standby not active")
		}
		return nil
	})
	// The new writer writes: a fresh record of its own instance appears.
	key := streams.MemberKey("platform-balancer", standby.ID())
	start := time.Now()
	clustertest.Eventually(t, 15*time.Second, func() error {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return err
		}
		if e.Created().Before(start) {
			return fmt.Errorf("record of %s not rewritten since the handover", key)
		}
		return nil
	})
}

// TestProxyInstanceGone closes one of two instances' connections before
// the balancer rediscovers them: route.<subject> requests the router
// sends to it find no responders, and are sent to the other instance and
// answered, none failing; the gone instance is dropped.
func TestProxyInstanceGone(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	echo(t, ctx, clustertest.Connect(t, c), nil)
	goneConn := clustertest.Connect(t, c)
	gone := echo(t, ctx, goneConn, nil)
	bal := startBalancer(t, ctx, clustertest.Connect(t, c), func(o *balancer.Options) { o.Router.Discovery = time.Hour })
	key := streams.MemberKey(gone.MicroName(), gone.ID())
	discovered(t, ctx, bal.Router(), 2)
	goneConn.Close()

	client := clustertest.Connect(t, c)
	for i := range 20 {
		m, err := client.Request(streams.RouteSubject("demo.echo"), []byte("x"), 5*time.Second)
		require.NoError(t, err)
		if code := errorCode(t, m); code != "" {
			t.Fatalf("request %d: error %s: %s", i, code, m.Data)
		}
		if id := answeredBy(t, m.Data); id == gone.ID() {
			t.Fatalf("request %d answered by the closed instance", i)
		}
	}
	if _, known := bal.Router().Instances()[key]; known {
		t.Errorf("router still lists the instance whose connection closed")
	}
}

// TestWeightRefresh: the record of an instance that reports is rewritten
// about every RefreshInterval, so its inputs stay current; the record of
// one known only from MEMBERS, whose JSON does not change, is rewritten
// six times less often (ten thousand such instances rewritten every
// interval kept a platform over a core busy).
func TestWeightRefresh(t *testing.T) {
	c, _, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	demo := echo(t, ctx, clustertest.Connect(t, c), nil)
	members, err := js.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err)
	quiet := streams.MemberKey("quiet", "i1")
	b, err := json.Marshal(membership.Member{Service: "quiet", Instance: "i1", State: membership.Alive, LastSeen: time.Now().UTC()})
	require.NoError(t, err)
	_, err = members.Put(ctx, quiet, b)
	require.NoError(t, err)
	startBalancer(t, ctx, clustertest.Connect(t, c), func(o *balancer.Options) { o.RefreshInterval = 200 * time.Millisecond })

	weights, err := js.KeyValue(ctx, streams.BucketWeights)
	require.NoError(t, err)
	reporting := streams.MemberKey("platform-demo", demo.ID())
	clustertest.Eventually(t, 10*time.Second, func() error {
		for _, k := range []string{quiet, reporting} {
			if _, err := weights.Get(ctx, k); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	})
	w, err := weights.WatchAll(ctx, jetstream.UpdatesOnly())
	require.NoError(t, err)
	defer func() { _ = w.Stop() }()
	counts := map[string]int{}
	window := time.After(4 * time.Second)
watch:
	for {
		select {
		case e := <-w.Updates():
			if e != nil {
				counts[e.Key()]++
			}
		case <-window:
			break watch
		}
	}
	t.Logf("writes in 4 s: reporting instance %d, instance known only from MEMBERS %d", counts[reporting], counts[quiet])
	require.GreaterOrEqual(t, counts[reporting], 8, "a reporting instance's record is refreshed every 200 ms")
	require.LessOrEqual(t, counts[quiet], 4, "an unchanged record waits six refresh intervals")
}
