package clusterbench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
)

// ReplicationOptions configure the replication benchmark.
type ReplicationOptions struct {
	// Replicas are the replica counts to measure (default 1, 3, 5).
	Replicas []int
	// Messages is how many messages one client publishes one at a time
	// for the latency figures (default 2000).
	Messages int
	// Duration is how long the pipelined throughput run lasts (default 3s).
	Duration time.Duration
	// InFlight bounds the pipelined run's unacknowledged publishes
	// (default 256).
	InFlight int
	// Size is the payload size in bytes (default 128).
	Size int
	// Progress receives a progress bar (nil: none).
	Progress io.Writer
}

func (o *ReplicationOptions) setDefaults() {
	if len(o.Replicas) == 0 {
		o.Replicas = []int{1, 3, 5}
	}
	if o.Messages <= 0 {
		o.Messages = 2000
	}
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if o.InFlight <= 0 {
		o.InFlight = 256
	}
	if o.Size <= 0 {
		o.Size = 128
	}
}

// Replication measures, for each replica count, the latency of
// acknowledged publishes one at a time (P50/P95/P99) and the throughput of
// pipelined publishes (extra pipelined_per_s), on t. label names the
// cluster's fsync policy in the row names.
func Replication(ctx context.Context, t *target.Target, label string, o ReplicationOptions) ([]bench.Result, error) {
	o.setDefaults()
	payload := make([]byte, o.Size)
	bar := bench.NewProgress(o.Progress, "replication "+label, int64(len(o.Replicas)))
	defer bar.Stop()
	var rows []bench.Result
	for _, r := range o.Replicas {
		name := fmt.Sprintf("BENCH_R%d", r)
		subject := fmt.Sprintf("bench.r%d", r)
		_ = t.JS.DeleteStream(ctx, name)
		if err := createStream(ctx, t.JS, jetstream.StreamConfig{
			Name: name, Subjects: []string{subject}, Replicas: r, Storage: jetstream.FileStorage,
		}); err != nil {
			return rows, fmt.Errorf("replication bench: create R%d stream: %w", r, err)
		}
		row, err := measure(ctx, t.JS, subject, payload, o)
		_ = t.JS.DeleteStream(context.WithoutCancel(ctx), name)
		if err != nil {
			return rows, fmt.Errorf("replication bench R%d: %w", r, err)
		}
		row.Name = fmt.Sprintf("R%d sync %s", r, label)
		row.Extra["replicas"] = float64(r)
		rows = append(rows, row)
		bar.Add(1)
	}
	return rows, nil
}

func measure(ctx context.Context, js jetstream.JetStream, subject string, payload []byte, o ReplicationOptions) (bench.Result, error) {
	res := bench.Result{Extra: map[string]float64{}}
	var lat bench.Latencies
	start := time.Now()
	for range o.Messages {
		t0 := time.Now()
		if _, err := js.Publish(ctx, subject, payload); err != nil {
			return res, err
		}
		lat.Add(time.Since(t0))
	}
	res.Finish(int64(o.Messages), time.Since(start), &lat)

	// Pipelined: keep InFlight publishes unacknowledged.
	pend := make(chan jetstream.PubAckFuture, o.InFlight)
	var n int64
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for f := range pend {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				errc <- err
				for range pend {
				}
				return
			}
		}
	}()
	start = time.Now()
	end := start.Add(o.Duration)
	var err error
	for time.Now().Before(end) && ctx.Err() == nil {
		var f jetstream.PubAckFuture
		if f, err = js.PublishAsync(subject, payload); err != nil {
			break
		}
		pend <- f
		n++
	}
	close(pend)
	if perr := <-errc; err == nil {
		err = perr
	}
	if err != nil {
		return res, fmt.Errorf("pipelined publish: %w", err)
	}
	res.Extra["pipelined_per_s"] = float64(n) / time.Since(start).Seconds()
	return res, nil
}
