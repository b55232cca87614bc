package replicator

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultIngestBuffer is the memory, in event bytes, the ingest service
// may hold between an event's arrival and its storage (1 GiB): a burst of
// several million small events at full speed fits, and a machine with
// tens of GiB does not notice it.
const DefaultIngestBuffer = 1 << 30

// Reasons a fire-and-forget event is dropped, besides the refusals of
// requests (bad_request, too_large, rate_limited, ...).
const (
	// reasonSlowConsumer: the intake subscription's pending limit was
	// reached, so the client library dropped the event before the service
	// saw it.
	reasonSlowConsumer = "slow_consumer"
	// reasonBufferFull: the Publisher's buffer was full.
	reasonBufferFull = "buffer_full"
)

// dropWarnEvery is the least time between two WARN lines about drops.
const dropWarnEvery = 10 * time.Second

// intakeLimits splits the ingest buffer between the intake subscription's
// pending queue (a quarter: it fills only while intake is slower than the
// arrivals) and the Publisher's buffer (the rest: it fills while JetStream
// is slower than intake). The pending queue is also capped in messages, so
// tiny events cannot hide their per-message overhead.
func intakeLimits(buffer int) (pendingMsgs, pendingBytes, publisher int) {
	pendingBytes = max(buffer/4, 1<<20)
	pendingMsgs = max(pendingBytes/128, 1024)
	publisher = max(buffer-pendingBytes, DefaultMaxBatchBytes)
	return pendingMsgs, pendingBytes, publisher
}

// drops counts fire-and-forget events that were not stored, by reason, and
// says so in a WARN line at most every dropWarnEvery. The events the
// client library drops at the intake subscription's pending limits are
// read from the subscription (nats.go counts them; its async error handler
// reports only the first of each episode).
type drops struct {
	log     *slog.Logger
	dropped *prometheus.CounterVec

	mu       sync.Mutex
	counters map[string]prometheus.Counter
	since    map[string]int64 // drops since the last WARN line, by reason
	warned   time.Time

	seen   int  // the intake subscription's drops already counted
	frozen bool // its count is final

	sub atomic.Pointer[nats.Subscription] // the intake subscription, once it dropped
}

func newDrops(log *slog.Logger, dropped *prometheus.CounterVec) *drops {
	return &drops{log: log, dropped: dropped, counters: map[string]prometheus.Counter{}, since: map[string]int64{}}
}

// add counts n events dropped for reason.
func (d *drops) add(reason string, n int) {
	if n <= 0 {
		return
	}
	d.mu.Lock()
	c := d.counters[reason]
	if c == nil {
		c = d.dropped.WithLabelValues(reason)
		d.counters[reason] = c
	}
	d.since[reason] += int64(n)
	d.mu.Unlock()
	c.Add(float64(n))
}

// asyncError is the intake connection's async error handler: a slow
// consumer error on the intake subscription hands it over for counting.
func (d *drops) asyncError(subject string) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub == nil || sub.Subject != subject || !errors.Is(err, nats.ErrSlowConsumer) {
			if err != nil {
				d.log.Warn("intake connection error", "err", err)
			}
			return
		}
		d.sub.CompareAndSwap(nil, sub)
		d.collect()
	}
}

// collect counts the intake subscription's drops not yet counted.
func (d *drops) collect() {
	sub := d.sub.Load()
	if sub == nil {
		return
	}
	d.mu.Lock()
	if d.frozen {
		d.mu.Unlock()
		return
	}
	n, err := sub.Dropped()
	delta := 0
	if err == nil && n > d.seen {
		delta, d.seen = n-d.seen, n
	}
	d.mu.Unlock()
	d.add(reasonSlowConsumer, delta)
}

// freeze lifts the intake subscription's pending limits, so it drops no
// more, and counts its last drops. Call it before the subscription
// drains at shutdown: a drained subscription no longer tells its count.
func (d *drops) freeze() {
	if sub := d.sub.Load(); sub != nil {
		_ = sub.SetPendingLimits(-1, -1)
	}
	d.collect()
	d.mu.Lock()
	d.frozen = true
	d.mu.Unlock()
}

// warn logs one WARN line with the drops since the last one, at most
// every dropWarnEvery.
func (d *drops) warn(now time.Time) {
	d.mu.Lock()
	if len(d.since) == 0 || now.Sub(d.warned) < dropWarnEvery {
		d.mu.Unlock()
		return
	}
	d.warned = now
	args := make([]any, 0, 2*len(d.since)+2)
	var total int64
	for reason, n := range d.since {
		args = append(args, reason, n)
		total += n
		delete(d.since, reason)
	}
	d.mu.Unlock()
	d.log.Warn("fire-and-forget events dropped: the ingest buffer (--ingest-buffer) or the rate limits were exceeded",
		append([]any{"dropped", total}, args...)...)
}

// dialIntake opens the service's intake connection: the options of conn
// (servers, credentials, TLS) with handlers of its own. A connection of its
// own keeps a burst of incoming events from delaying the Publisher's acks
// on conn, and lets the service see its subscription's slow consumer
// errors, which nats.go reports to the connection's error handler.
func dialIntake(conn *nats.Conn, onErr nats.ErrHandler, log *slog.Logger) (*nats.Conn, error) {
	o := conn.Opts
	o.Name = "platform-replicator-intake"
	o.AsyncErrorCB = onErr
	o.ClosedCB = nil
	o.ConnectedCB = nil
	o.DisconnectedCB = nil
	o.DisconnectedErrCB = func(_ *nats.Conn, err error) {
		if err != nil {
			log.Warn("intake connection lost", "err", err)
		}
	}
	o.ReconnectedCB = nil
	o.DiscoveredServersCB = nil
	o.LameDuckModeHandler = nil
	o.MaxReconnect = -1
	o.RetryOnFailedConnect = false
	nc, err := o.Connect()
	if err != nil {
		return nil, fmt.Errorf("replicator: intake connection: %w", err)
	}
	return nc, nil
}
