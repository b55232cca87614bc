package replicator

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// TestRequestsDuringFlood: while fire-and-forget events flood the ingest
// service far faster than it stores them, every request still gets an
// answer within its requester's deadline: stored, or unavailable with
// retry_after_ms. Requests have a lane of their own; queued behind the
// flood's backlog they waited for all of it.
func TestRequestsDuringFlood(t *testing.T) {
	e := newEnv(t, 3)
	// One message per event through a shallow pipeline stores slowly:
	// the flood's backlog fills the whole buffer.
	_, reg := startIngest(t, e, Options{PerEvent: true, MaxInFlight: 4, Buffer: 8 << 20, RequestTimeout: time.Second})
	flooder := clustertest.Connect(t, e.c)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		data := make([]byte, 128)
		for ctx.Err() == nil {
			for range 1000 {
				if err := flooder.Publish(streams.IngestSubject("flood"), data); err != nil {
					return
				}
			}
			_ = flooder.Flush()
		}
	}()
	t.Cleanup(func() { stop(); wg.Wait() })
	// The flood is on once the service drops events or holds a backlog
	// of tens of thousands.
	clustertest.Eventually(t, time.Minute, func() error {
		in := sum(family(t, reg, "platform_replicator_events_in_total", "level"))
		dropped := sum(family(t, reg, "platform_replicator_dropped_events_total", "reason"))
		if in < 50_000 && dropped == 0 {
			return fmt.Errorf("flood not under way: %.0f accepted, %.0f dropped", in, dropped)
		}
		return nil
	})

	const requests, deadline = 12, 5 * time.Second // the stock CLI's timeout
	nc := clustertest.Connect(t, e.c)
	var stored, unavailable int
	for i := range requests {
		start := time.Now()
		rctx, cancel := context.WithTimeout(context.Background(), deadline)
		m, err := nc.RequestMsgWithContext(rctx, &nats.Msg{
			Subject: streams.IngestSubject("flood.req"),
			Data:    fmt.Appendf(nil, `{"n":%d}`, i),
			Header:  nats.Header{streams.ConsistencyHeader: {"all"}},
		})
		cancel()
		require.NoError(t, err, "request %d: no answer within %s", i, deadline)
		if serr := service.ParseError(service.JSON, m.Data); serr != nil {
			require.Equal(t, service.CodeUnavailable, serr.Code, "request %d: %s", i, m.Data)
			ms, ok := serr.Fields["retry_after_ms"].(float64)
			require.True(t, ok && ms > 0, "request %d: unavailable without retry_after_ms: %s", i, m.Data)
			unavailable++
			continue
		}
		var a IngestAck
		require.NoError(t, json.Unmarshal(m.Data, &a), "%s", m.Data)
		require.NotZero(t, a.Seq, "request %d: %s", i, m.Data)
		stored++
		t.Logf("request %d stored in %s", i, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("during the flood: %d stored, %d unavailable", stored, unavailable)
}

// TestRequestBacklogRefusedAtOnce: when requests already waiting have
// used half their time, a new one is answered unavailable at once
// instead of queueing behind them.
func TestRequestBacklogRefusedAtOnce(t *testing.T) {
	lane := &requestLane{}
	now := time.Now()
	lane.enter(now.Add(-600 * time.Millisecond))
	e := lane.enter(now.Add(-100 * time.Millisecond))
	require.Equal(t, 600*time.Millisecond, lane.oldestWait(now))
	lane.leave(e)
	require.Equal(t, 600*time.Millisecond, lane.oldestWait(now), "the oldest still waits")
	lane.leave(lane.waiting[0])
	require.Zero(t, lane.oldestWait(now), "nothing waits")
	require.Empty(t, lane.waiting, "answered entries are trimmed")
}
