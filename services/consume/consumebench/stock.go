package consumebench

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/streams"
)

// Stock is the baseline a JetStream user writes: a durable pull consumer
// with explicit acks, fetching in batches of 500 with 10,000 acks
// pending (as `nats bench js consume` does), acknowledging each of the
// per-event messages.
func (r *Runner) Stock(ctx context.Context) (bench.Result, error) {
	res := bench.Result{Name: "consume/stock-pull-ack"}
	n := int64(r.o.Events)
	prog := bench.NewProgress(r.o.Progress, res.Name, n)
	defer prog.Stop()
	nc, js, err := r.connectJS()
	if err != nil {
		return res, err
	}
	defer nc.Close()
	c0, t0 := cpuNow(), time.Now()
	cons, err := js.CreateOrUpdateConsumer(ctx, streams.Events, jetstream.ConsumerConfig{
		Durable: "bench-stock", FilterSubject: rawPrefix + ">", AckPolicy: jetstream.AckExplicitPolicy,
		MaxAckPending: 10_000, AckWait: time.Minute,
	})
	if err != nil {
		return res, err
	}
	defer func() { _ = js.DeleteConsumer(context.Background(), streams.Events, "bench-stock") }()
	it, err := cons.Messages(jetstream.PullMaxMessages(500))
	if err != nil {
		return res, err
	}
	defer it.Stop()
	var got int64
	for got < n {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return res, fmt.Errorf("stock consumer: %d of %d: %w", got, n, err)
		}
		if err := m.Ack(); err != nil {
			return res, err
		}
		got++
		if got%1024 == 0 {
			prog.Add(1024)
		}
	}
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		return res, err
	}
	finish(&res, n, time.Since(t0), c0.since())
	// Every ack reached the server (not timed: the server's own work).
	deadline := time.Now().Add(30 * time.Second)
	for {
		ci, err := cons.Info(ctx)
		if err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 {
			return res, nil
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("stock consumer: acks still pending: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
