package balancer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

// TestWeightsCarryTrueStats: WEIGHTS' stats_requests and stats_errors
// are the instance's $SRV.STATS, which count the requests an endpoint with
// concurrency answers from its worker goroutines, failures included.
func TestWeightsCarryTrueStats(t *testing.T) {
	const n, k = 20, 5
	_, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	svc, err := service.New(service.Options{
		Conn: nc, Name: "pooled", HeartbeatInterval: -1, Logger: clustertest.Logger(),
		Endpoints: []service.Endpoint{{
			Name: "work", Subject: "pooled.work", Concurrency: 4,
			Handler: service.Func(func(_ context.Context, r *service.Request) (any, error) {
				if string(r.Data()) == "fail" {
					return nil, service.Errorf(service.CodeConflict, "asked to fail")
				}
				return "ok", nil
			}),
		}},
	})
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-svc.Ready()
	for i := range n {
		body := []byte("ok")
		if i < k {
			body = []byte("fail")
		}
		_, err := nc.Request("pooled.work", body, 5*time.Second)
		require.NoError(t, err)
	}

	startBalancer(t, ctx, nc, nil)
	kv, err := js.KeyValue(ctx, streams.BucketWeights)
	require.NoError(t, err)
	key := svc.MicroName() + "." + svc.ID()
	clustertest.Eventually(t, 20*time.Second, func() error {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("WEIGHTS %s: %w", key, err)
		}
		var rec balancer.Record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return err
		}
		if rec.Inputs.Requests != n || rec.Inputs.Errors != k {
			return fmt.Errorf("stats_requests %d, stats_errors %d; want %d and %d", rec.Inputs.Requests, rec.Inputs.Errors, n, k)
		}
		return nil
	})
}
