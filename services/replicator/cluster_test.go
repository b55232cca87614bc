package replicator

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

func TestQuorumSurvivesStepDownAndRestart(t *testing.T) {
	e := newEnv(t, 3)
	ctx := clustertest.Context(t, 60*time.Second)
	p := e.publisher(t)
	a, err := p.Publish(ctx, Message{Subject: "events.lv.q", Data: []byte("a")})
	require.NoError(t, err)

	clustertest.StepDown(t, e.c, e.nc, streams.Events)
	b, err := p.Publish(ctx, Message{Subject: "events.lv.q", Data: []byte("b")})
	require.NoError(t, err, "publishing goes on after a leader change")

	i := clustertest.WaitStreamLeader(t, e.c, streams.Events, -1)
	e.c.StopNode(i)
	c, err := p.Publish(ctx, Message{Subject: "events.lv.q", Data: []byte("c")})
	require.NoError(t, err, "a quorum remains with one node down")
	for _, want := range []struct {
		ack  Ack
		data string
	}{{a, "a"}, {b, "b"}, {c, "c"}} {
		ev, err := Get(ctx, e.nc, streams.Events, want.ack.Pos(), Strong)
		require.NoError(t, err)
		require.Equal(t, want.data, string(ev.Data))
	}
	clustertest.RestartNode(t, e.c, i)
	evs := readAll(t, e.js, 3, WithFilter("events.lv.q"))
	for k, want := range []string{"a", "b", "c"} {
		require.Equal(t, want, string(evs[k].Data))
	}
}

func TestAllWaitsForEveryReplica(t *testing.T) {
	e := newEnv(t, 3)
	ctx := clustertest.Context(t, 60*time.Second)
	p := e.publisher(t, WithLevel(All))
	_, err := p.Publish(ctx, Message{Subject: "events.lv.all", Data: []byte("1")})
	require.NoError(t, err)

	// Stop a follower: a quorum still acknowledges, All cannot complete.
	leader := clustertest.WaitStreamLeader(t, e.c, streams.Events, -1)
	follower := (leader + 1) % 3
	e.c.StopNode(follower)
	waiting, err := p.PublishAsync(ctx, Message{Subject: "events.lv.all", Data: []byte("2")})
	require.NoError(t, err)
	q, err := p.Publish(ctx, Message{Subject: "events.lv.all", Data: []byte("3"), Level: Quorum})
	require.NoError(t, err)
	require.NotZero(t, q.Seq)
	select {
	case <-waiting.Done():
		_, err := waiting.Result()
		t.Fatalf("All completed with a replica down: %v", err)
	default:
	}

	// With a short deadline the caller learns the event is only at quorum.
	short := e.publisher(t, WithLevel(All), WithRetry(time.Second, 500*time.Millisecond))
	ack, err := short.Publish(ctx, Message{Subject: "events.lv.all", Data: []byte("4")})
	require.ErrorIs(t, err, ErrReplicasBehind)
	require.NotZero(t, ack.Seq, "the event is stored at quorum")

	// Once the follower is back and caught up, the waiting event completes.
	clustertest.RestartNode(t, e.c, follower)
	ack, err = waiting.Wait(ctx)
	require.NoError(t, err)
	require.NotZero(t, ack.Seq)
}

func TestAsyncReportsFailureThroughCallback(t *testing.T) {
	e := newEnv(t, 1)
	results := make(chan error, 1)
	p := e.publisher(t, WithLevel(Async), WithRetry(100*time.Millisecond, 300*time.Millisecond),
		WithResultHandler(func(m *Message, ack Ack, err error) { results <- err }))
	ctx := clustertest.Context(t, 10*time.Second)
	ack, err := p.Publish(ctx, Message{Subject: "nostream.async", Data: []byte("x")})
	require.NoError(t, err, "async returns once buffered")
	require.Zero(t, ack.Seq)
	select {
	case err := <-results:
		require.ErrorIs(t, err, ErrDeadline)
	case <-ctx.Done():
		t.Fatal("no outcome reported")
	}
}

// TestNoLossNoDuplicates publishes a known set of events while the stream
// leader is stepped down several times and the leader's node restarts;
// the Reader then sees every acknowledged event exactly once.
func TestNoLossNoDuplicates(t *testing.T) {
	e := newEnv(t, 3)
	for _, tc := range []struct {
		name string
		opts []PublisherOption
	}{
		{"per event", []PublisherOption{WithMaxInFlight(64)}},
		{"envelope", []PublisherOption{WithEnvelope()}},
		{"envelope one batch in flight", []PublisherOption{WithEnvelope(), WithMaxBatchesInFlight(1), WithMaxInFlight(64)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := clustertest.Context(t, 90*time.Second)
			subj := "events.chaos." + strings.ReplaceAll(tc.name, " ", "_")
			reg := prometheus.NewRegistry()
			p := e.publisher(t, append(tc.opts, WithRegisterer(reg))...)
			// The producer runs at a steady pace until the chaos is over,
			// so stepdowns and the restart land in the middle of it.
			const minEvents = 1000
			var futs []*Future
			chaosDone := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for i := 0; ; i++ {
					if i >= minEvents {
						select {
						case <-chaosDone:
							return
						default:
						}
					}
					f, err := p.PublishAsync(ctx, Message{Subject: subj, Data: fmt.Appendf(nil, "ev-%d", i)})
					if err != nil {
						t.Errorf("publish %d: %v", i, err)
						return
					}
					futs = append(futs, f)
					if i%20 == 19 {
						<-tick.C
					}
				}
			}()
			for range 3 {
				clustertest.StepDown(t, e.c, e.nc, streams.Events)
			}
			i := clustertest.WaitStreamLeader(t, e.c, streams.Events, -1)
			e.c.StopNode(i)
			clustertest.RestartNode(t, e.c, i)
			close(chaosDone)
			wg.Wait()
			require.NoError(t, p.Flush(ctx))

			acked := map[string]bool{}
			var last Ack // the acknowledgement of the highest position
			for i, f := range futs {
				require.NotNil(t, f, "event %d", i)
				if ack, err := f.Result(); err == nil {
					acked[fmt.Sprintf("ev-%d", i)] = true
					if ack.Seq > last.Seq || ack.Seq == last.Seq && ack.Index > last.Index {
						last = ack
					}
				} else {
					t.Logf("event %d not acknowledged: %v", i, err)
				}
			}
			n := len(futs)
			t.Logf("%d events published, %d acknowledged, %.0f retries", n, len(acked), counterTotal(t, reg, "platform_replicator_retries_total"))
			require.Greater(t, len(acked), n*9/10, "most events are acknowledged")

			// Read up to the last acknowledged position. (The stream's last
			// message for the subject is no bound: EVENTS allows direct
			// gets, which a replica still catching up after the restart
			// may answer with an older message.)
			r, err := NewReader(ctx, e.js, WithFilter(subj))
			require.NoError(t, err)
			defer r.Close()
			seen := map[string]int{}
			for {
				ev, err := r.Next(ctx)
				require.NoError(t, err)
				seen[string(ev.Data)]++
				if ev.Pos.Seq == last.Seq && ev.Pos.Index == last.Index {
					break
				}
			}
			for k := range acked {
				require.Equal(t, 1, seen[k], "acknowledged event %s seen %d times", k, seen[k])
			}
			for k, c := range seen {
				require.Equal(t, 1, c, "event %s stored %d times", k, c)
			}
		})
	}
}

// counterTotal sums every series of the counter name in reg.
func counterTotal(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestAllUnderSustainedLoad publishes at level All while other publishers
// keep the stream busy, so the followers are rarely all at lag 0 at one
// instant: every event must still complete, none with ErrReplicasBehind.
func TestAllUnderSustainedLoad(t *testing.T) {
	e := newEnv(t, 3)
	ctx := clustertest.Context(t, 90*time.Second)
	_, js := clustertest.JetStream(t, e.c)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			subj := fmt.Sprintf("events.lv.load.%d", c)
			for {
				select {
				case <-stop:
					return
				default:
				}
				// 128 in flight at a time: a steady stream of commits.
				futs := make([]jetstream.PubAckFuture, 0, 128)
				for range 128 {
					f, err := js.PublishAsync(subj, []byte("load"))
					if err != nil {
						break
					}
					futs = append(futs, f)
				}
				for _, f := range futs {
					select {
					case <-f.Ok():
					case <-f.Err():
					case <-stop:
						return
					}
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	// A deadline long enough for any follower to persist an event on a
	// loaded machine, and far shorter than the run of sustained writes.
	p := e.publisher(t, WithLevel(All), WithRetry(5*time.Second, 10*time.Second))
	var futs []*Future
	for i := range 300 {
		f, err := p.PublishAsync(ctx, Message{Subject: "events.lv.allload", Data: fmt.Appendf(nil, "%d", i)})
		require.NoError(t, err)
		futs = append(futs, f)
		if i%10 == 9 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	behind := 0
	for i, f := range futs {
		_, err := f.Wait(ctx)
		if errors.Is(err, ErrReplicasBehind) {
			behind++
			continue
		}
		require.NoError(t, err, "event %d", i)
	}
	if behind > 0 {
		t.Fatalf("%d of %d events failed with ErrReplicasBehind under load while every follower was up", behind, len(futs))
	}
}
