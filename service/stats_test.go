package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
)

// TestMicroStatsCountAnswersGivenLater sends N requests, K of which fail,
// to endpoints whose answers come after the handler call or from its
// worker goroutines, and reads $SRV.STATS as `nats micro stats` does:
// num_requests is N, num_errors K, and the processing time is the time
// the handlers really took, within 20%.
func TestMicroStatsCountAnswersGivenLater(t *testing.T) {
	const n, k, work = 40, 10, 30 * time.Millisecond
	c := clustertest.Start(t, 1)
	nc := clustertest.Connect(t, c)
	var measured sync.Map // endpoint -> *atomic.Int64 (ns spent by handlers)
	var later sync.WaitGroup
	timed := func(name string, fn func(r *service.Request, took func() time.Duration)) service.Handler {
		sum := new(atomic.Int64)
		measured.Store(name, sum)
		return func(_ context.Context, r *service.Request) {
			start := time.Now()
			fn(r, func() time.Duration {
				d := time.Since(start)
				sum.Add(int64(d))
				return d
			})
		}
	}
	answer := func(r *service.Request, took func() time.Duration) {
		var fail bool
		_ = r.Decode(&fail)
		time.Sleep(work)
		took()
		if fail {
			r.Fail(service.Errorf(service.CodeConflict, "asked to fail"))
			return
		}
		r.Respond("ok")
	}
	svc, err := service.New(service.Options{
		Conn: nc, Name: "stats", Logger: clustertest.Logger(), HeartbeatInterval: -1,
		Endpoints: []service.Endpoint{
			{Name: "pooled", Subject: "stats.pooled", Concurrency: 8, Handler: timed("pooled", answer)},
			{Name: "later", Subject: "stats.later", Handler: timed("later", func(r *service.Request, took func() time.Duration) {
				later.Go(func() { answer(r, took) })
			})},
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done); later.Wait() })
	<-svc.Ready()

	client := clustertest.Connect(t, c)
	for _, subject := range []string{"stats.pooled", "stats.later"} {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8) // no more than the endpoint runs at once
		for i := range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				body := []byte("false")
				if i < k {
					body = []byte("true")
				}
				if _, err := client.Request(subject, body, 10*time.Second); err != nil {
					t.Errorf("%s: %v", subject, err)
				}
			})
		}
		wg.Wait()
	}

	subject, err := micro.ControlSubject(micro.StatsVerb, svc.MicroName(), svc.ID())
	require.NoError(t, err)
	m, err := client.Request(subject, nil, 5*time.Second)
	require.NoError(t, err)
	var st micro.Stats
	require.NoError(t, json.Unmarshal(m.Data, &st))
	require.Equal(t, micro.StatsResponseType, st.Type)
	byName := map[string]*micro.EndpointStats{}
	for _, e := range st.Endpoints {
		byName[e.Name] = e
	}
	for _, name := range []string{"pooled", "later"} {
		e := byName[name]
		require.NotNil(t, e, "endpoint %s missing from %s", name, m.Data)
		v, _ := measured.Load(name)
		want := time.Duration(v.(*atomic.Int64).Load())
		if e.NumRequests != n || e.NumErrors != k {
			t.Errorf("%s: num_requests %d, num_errors %d; want %d and %d", name, e.NumRequests, e.NumErrors, n, k)
		}
		if e.ProcessingTime < want*8/10 || e.ProcessingTime > want*12/10 {
			t.Errorf("%s: processing_time %s; the handlers took %s", name, e.ProcessingTime, want)
		}
		if e.AverageProcessingTime != e.ProcessingTime/time.Duration(n) {
			t.Errorf("%s: average_processing_time %s, want %s", name, e.AverageProcessingTime, e.ProcessingTime/time.Duration(n))
		}
		if e.LastError != "409:asked to fail" {
			t.Errorf("%s: last_error %q", name, e.LastError)
		}
		if inst := byName[name+service.InstanceEndpointSuffix]; inst == nil || inst.NumRequests != 0 {
			t.Errorf("%s: the instance-addressed copy should be listed, unused: %+v", name, inst)
		}
	}
}

// TestMicroStatsCountSlowConsumer fills an endpoint's pending limit while
// its handler is stuck: the requests nats.go drops count as an error of
// the endpoint in $SRV.STATS, as micro counts them.
func TestMicroStatsCountSlowConsumer(t *testing.T) {
	c := clustertest.Start(t, 1)
	nc := clustertest.Connect(t, c)
	release := make(chan struct{})
	svc, err := service.New(service.Options{
		Conn: nc, Name: "slow", Logger: clustertest.Logger(), HeartbeatInterval: -1,
		Endpoints: []service.Endpoint{{Name: "stuck", Subject: "slow.stuck", PendingMsgs: 4, Timeout: -1,
			Handler: func(_ context.Context, r *service.Request) { <-release; r.Respond("ok") }}},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	defer close(release)
	<-svc.Ready()

	client := clustertest.Connect(t, c)
	subject, err := micro.ControlSubject(micro.StatsVerb, svc.MicroName(), svc.ID())
	require.NoError(t, err)
	clustertest.Eventually(t, 10*time.Second, func() error {
		for range 20 {
			if err := client.Publish("slow.stuck", []byte(`{}`)); err != nil {
				return err
			}
		}
		m, err := client.Request(subject, nil, 5*time.Second)
		if err != nil {
			return err
		}
		var st micro.Stats
		if err := json.Unmarshal(m.Data, &st); err != nil {
			return err
		}
		for _, e := range st.Endpoints {
			if e.Name == "stuck" && e.NumErrors > 0 && e.LastError == nats.ErrSlowConsumer.Error() {
				return nil
			}
		}
		return fmt.Errorf("no slow consumer error in %s", m.Data)
	})
}
