package replicator

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
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
// arrivals), the request lane's Publisher (a sixteenth: requests wait for
// their answer, so a backlog of them is short-lived) and the main
// Publisher's buffer (the rest: it fills while JetStream is slower than
// intake). The pending queue is also capped in messages, so tiny events
// cannot hide their per-message overhead.
func intakeLimits(buffer int) (pendingMsgs, pendingBytes, publisher, requests int) {
	pendingBytes = max(buffer/4, 1<<20)
	pendingMsgs = max(pendingBytes/128, 1024)
	requests = max(buffer/16, DefaultMaxBatchBytes)
	publisher = max(buffer-pendingBytes-requests, DefaultMaxBatchBytes)
	return pendingMsgs, pendingBytes, publisher, requests
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

	subs   map[*nats.Subscription]int // intake subscriptions, with their drops already counted
	frozen bool                       // their counts are final
}

func newDrops(log *slog.Logger, dropped *prometheus.CounterVec) *drops {
	return &drops{log: log, dropped: dropped, counters: map[string]prometheus.Counter{}, since: map[string]int64{},
		subs: map[*nats.Subscription]int{}}
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
		d.watch(sub)
		d.collect()
	}
}

// watch adds an intake subscription whose drops collect counts.
func (d *drops) watch(sub *nats.Subscription) {
	d.mu.Lock()
	if _, ok := d.subs[sub]; !ok && !d.frozen {
		d.subs[sub] = 0
	}
	d.mu.Unlock()
}

// collect counts the intake subscriptions' drops not yet counted.
func (d *drops) collect() {
	d.mu.Lock()
	if d.frozen {
		d.mu.Unlock()
		return
	}
	delta := 0
	for sub, seen := range d.subs {
		if n, err := sub.Dropped(); err == nil && n > seen {
			delta += n - seen
			d.subs[sub] = n
		}
	}
	d.mu.Unlock()
	d.add(reasonSlowConsumer, delta)
}

// freeze lifts the intake subscriptions' pending limits, so they drop no
// more, and counts their last drops. Call it before the subscriptions
// drain at shutdown: a drained subscription no longer tells its count.
func (d *drops) freeze() {
	d.mu.Lock()
	subs := make([]*nats.Subscription, 0, len(d.subs))
	for sub := range d.subs {
		subs = append(subs, sub)
	}
	d.mu.Unlock()
	for _, sub := range subs {
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

// intakeConns is how many connections the ingest service takes events
// on. The server holds at most max_pending (64 MiB by default) for each
// connection and closes one that falls further behind, losing what it
// held and everything sent until the connection is back; with one
// connection a flood of 1 MiB events did that several times in 20 s
// before. Four share a flood: each holds a quarter of it, on a reader
// of its own. The order of fire-and-forget events across them is not
// kept, as it is not across the instances of a queue group either.
const intakeConns = 4

// extraIntake is the intake connections beyond the micro service's own,
// subscribed to the ingest subject in the service's queue group.
type extraIntake struct {
	conns  []*nats.Conn
	closed []<-chan struct{}
}

// openExtraIntake subscribes intakeConns-1 more connections. Their
// fire-and-forget events go to the bulk lane directly; a request is handed
// to the micro endpoint on this instance's own subject, where it is
// answered and counted like any other.
func (s *Service) openExtraIntake(svc *service.Service, subject, queue string, pendingMsgs, pendingBytes int) (*extraIntake, error) {
	x := &extraIntake{}
	for range intakeConns - 1 {
		nc, closed, err := dialIntake(s.opts.Conn, s.drops.asyncError(subject), s.log)
		if err != nil {
			x.close(time.Second)
			return nil, err
		}
		x.conns = append(x.conns, nc)
		x.closed = append(x.closed, closed)
		prefix := streams.InstanceSubject(svc.MicroName(), svc.ID(), "")
		sub, err := nc.QueueSubscribe(subject, queue, func(m *nats.Msg) {
			if m.Reply == "" {
				s.queueEvent(arrival{subject: m.Subject, header: m.Header, data: m.Data})
				return
			}
			fwd := &nats.Msg{Subject: prefix + m.Subject, Reply: m.Reply, Header: m.Header, Data: m.Data}
			if err := nc.PublishMsg(fwd); err != nil {
				s.log.Debug("forward ingest request", "err", err)
			}
		})
		if err == nil {
			err = sub.SetPendingLimits(pendingMsgs, pendingBytes)
		}
		if err == nil {
			err = nc.FlushTimeout(5 * time.Second)
		}
		if err != nil {
			x.close(time.Second)
			return nil, fmt.Errorf("replicator: intake subscription: %w", err)
		}
		s.drops.watch(sub)
	}
	return x, nil
}

// close drains the connections, handing what they received to the bulk
// lane, and waits up to timeout for them to close.
func (x *extraIntake) close(timeout time.Duration) {
	if x == nil {
		return
	}
	for _, nc := range x.conns {
		if err := nc.Drain(); err != nil {
			nc.Close()
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i, closed := range x.closed {
		select {
		case <-closed:
		case <-deadline.C:
			for _, nc := range x.conns[i:] {
				nc.Close()
			}
			return
		}
	}
}

// dialIntake opens an intake connection of the service: the options of
// conn (servers, credentials, TLS) with handlers of its own, and a channel
// closed once it is closed. Connections of their own keep a burst of
// incoming events from delaying the Publisher's acks on conn, and let the
// service see its subscriptions' slow consumer errors, which nats.go
// reports to the connection's error handler.
func dialIntake(conn *nats.Conn, onErr nats.ErrHandler, log *slog.Logger) (*nats.Conn, <-chan struct{}, error) {
	closed := make(chan struct{})
	o := conn.Opts
	o.Name = "platform-replicator-intake"
	o.AsyncErrorCB = onErr
	o.ClosedCB = func(*nats.Conn) { close(closed) }
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
		return nil, nil, fmt.Errorf("replicator: intake connection: %w", err)
	}
	return nc, closed, nil
}
