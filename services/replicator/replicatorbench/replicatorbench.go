// Package replicatorbench measures the replicator on a live cluster, side
// by side with raw nats.go publishing, for `platform bench publish`,
// `ingest` and `compress` and the package's Go benchmarks. It lives apart
// from the replicator so that importers of the Publisher link no benchmark
// code and no embedded server.
package replicatorbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/replicator"
)

// Options size the replicator's benchmarks.
type Options struct {
	// Events is how many events to publish (per client for Ingest).
	Events int
	// Size is the event size in bytes (default 128).
	Size int
	// InFlight is the pipeline depth of both the Publisher and the raw
	// baseline (default 256).
	InFlight int
	// Clients is how many concurrent request clients Ingest runs.
	Clients int
	// Conns is how many NATS connections the clients share (default one
	// per client).
	Conns int
	// Progress receives progress bars (nil: none).
	Progress io.Writer
	// Rounds splits the publish benchmarks into that many alternating
	// rounds of the baseline and the Publisher (default 3), so load from
	// elsewhere on the machine hits both sides alike.
	Rounds int
	// FloodEvents and FloodSize are the fire-and-forget events Flood
	// publishes while the requests run (default 3,000,000 of 128 bytes).
	FloodEvents, FloodSize int
	// Consistency is the Platform-Consistency of Flood's requests
	// (default all).
	Consistency string
	// Timeout is how long a Flood request waits for its answer (default
	// 5s, the stock CLI's).
	Timeout time.Duration

	lat  *bench.Latencies // shared across rounds when set
	prog *bench.Progress
}

func (o *Options) setDefaults() {
	if o.Size == 0 {
		o.Size = 128
	}
	if o.InFlight == 0 {
		o.InFlight = replicator.DefaultMaxInFlight
	}
	if o.Events == 0 {
		o.Events = 100_000
	}
	if o.Clients == 0 {
		o.Clients = 100
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
}

// Corpus returns n realistic JSON events of about size bytes each, the
// same for every run (fixed seed).
func Corpus(n, size int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := []string{"order.created", "order.paid", "order.shipped", "cart.updated", "user.login"}
	cities := []string{"Berlin", "Lyon", "Osaka", "Austin", "Porto", "Leeds"}
	out := make([][]byte, n)
	for i := range out {
		b := fmt.Appendf(nil, `{"id":%d,"type":%q,"user":"u%05d","city":%q,"amount":%d.%02d,"ts":"2025-06-%02dT%02d:%02d:%02dZ","items":%d`,
			1_000_000+i, kinds[rng.IntN(len(kinds))], rng.IntN(50_000), cities[rng.IntN(len(cities))],
			rng.IntN(500), rng.IntN(100), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), 1+rng.IntN(9))
		if len(b) < size-2 {
			pad := size - 2 - len(b) - len(`,"note":""`)
			if pad > 0 {
				note := make([]byte, pad)
				for j := range note {
					note[j] = "abcdefghijklmnopqrstuvwxyz     "[rng.IntN(31)]
				}
				b = fmt.Appendf(b, `,"note":%q`, note)
			}
		}
		out[i] = append(b, '}')
	}
	return out
}

// ackWaiter records each event's latency from its send time, waiting on
// the outcomes in send order.
type ackWaiter struct {
	lat    bench.Latencies
	ch     chan waitItem
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	prog   *bench.Progress
	acked  int64
	shared *bench.Latencies
}

type waitItem struct {
	start time.Time
	wait  func() error // blocks until the outcome
}

func newAckWaiter(prog *bench.Progress, events int, lat *bench.Latencies) *ackWaiter {
	w := &ackWaiter{ch: make(chan waitItem, min(events, 1<<20)), prog: prog, shared: lat}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for it := range w.ch {
			if err := it.wait(); err != nil {
				w.mu.Lock()
				if w.err == nil {
					w.err = err
				}
				w.mu.Unlock()
				continue
			}
			if w.shared != nil {
				w.shared.Add(time.Since(it.start))
			} else {
				w.lat.Add(time.Since(it.start))
			}
			w.acked++
			w.prog.Add(1)
		}
	}()
	return w
}

func (w *ackWaiter) wait() error {
	close(w.ch)
	w.wg.Wait()
	return w.err
}

// startIngest runs an ingest service with sopts on nc in this process until
// stop is called, and waits until it serves.
func startIngest(nc *nats.Conn, sopts replicator.Options) (stop func(), err error) {
	sopts.Conn = nc
	if sopts.Logger == nil {
		sopts.Logger = slog.New(slog.DiscardHandler)
	}
	svc, err := replicator.New(sopts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
		return func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("ingest service: %w", err)
	}
}
