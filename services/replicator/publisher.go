package replicator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
)

// Message is one event to publish.
type Message struct {
	// Subject is where the event is stored, e.g. events.orders.
	Subject string
	// Data is the event's payload.
	Data []byte
	// Header holds optional headers stored with the event. Content-Encoding
	// and Platform-Envelope* are reserved; a Nats-Msg-Id here counts as ID.
	Header nats.Header
	// ID is the event's message id for deduplication. Empty: the Publisher
	// makes one, so its own retries stay idempotent.
	ID string
	// Level is the event's consistency level; LevelDefault takes the
	// Publisher's.
	Level Level
}

// Ack says where an event was stored.
type Ack struct {
	// Stream is the stream that stored it.
	Stream string
	// Seq is the stream sequence of the message holding it.
	Seq uint64
	// Index is its position in an envelope (0 for a message of its own).
	Index int
	// Count is how many events the message holds (1 without an envelope).
	Count int
	// ID is its id: the message id, or "<envelope id>:<index>".
	ID string
	// Duplicate is set when the stream already held an event with this id.
	Duplicate bool
}

// Pos returns the event's position, as a Reader reports it.
func (a Ack) Pos() Position { return Position{Seq: a.Seq, Index: a.Index, Count: a.Count} }

// Future is the outcome of an event published with PublishAsync.
type Future struct {
	done chan struct{}
	ack  Ack
	err  error
}

// Done is closed once the outcome is known.
func (f *Future) Done() <-chan struct{} { return f.done }

// Result returns the outcome; call it after Done is closed.
func (f *Future) Result() (Ack, error) {
	<-f.done
	return f.ack, f.err
}

// Wait waits for the outcome or ctx.
func (f *Future) Wait(ctx context.Context) (Ack, error) {
	select {
	case <-f.done:
		return f.ack, f.err
	case <-ctx.Done():
		return Ack{}, ctx.Err()
	}
}

// Publisher publishes events to JetStream in batches, with a bounded
// pipeline of acknowledgements, compression and idempotent retries. It is
// safe for concurrent use. Make one with NewPublisher and Close it.
//
// An event goes through four parts: the batcher accepts it and groups it
// with others (batcher.go), the packer turns each batch into stream
// messages (pack.go), the flight tracker publishes them and matches their
// acks, retrying as needed (flight.go), and at level All the allWaiter
// holds the events until every replica has them (all.go).
type Publisher struct {
	cfg config
	log *slog.Logger
	m   *metrics
	// latency caches the per-level ack latency series, indexed by Level.
	latency [All + 1]prometheus.Observer

	batches *batcher
	packer  *packer
	flight  *flight
	all     *allWaiter

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// NewPublisher starts a Publisher on js's connection. It subscribes to a
// private inbox for acknowledgements and starts its sender.
func NewPublisher(js jetstream.JetStream, opts ...PublisherOption) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("new publisher: nil JetStream")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("new publisher: %w", err)
		}
	}
	if cfg.maxInFlight == 0 {
		cfg.maxInFlight = DefaultMaxInFlight
		if cfg.envelope {
			cfg.maxInFlight = DefaultEnvelopeMaxInFlight
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	nc := js.Conn()
	maxPayload := nc.MaxPayload()
	configured := cfg.maxBatchBytes
	shrunk, err := cfg.fitPayload(maxPayload)
	if err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	p := &Publisher{
		cfg:  cfg,
		log:  cfg.logger.With("component", "replicator.publisher"),
		m:    newMetrics(cfg.registerer),
		stop: make(chan struct{}),
	}
	if shrunk {
		p.log.Info("envelope size limited by the server's max payload",
			"max_batch_bytes", cfg.maxBatchBytes, "configured", configured, "max_payload", maxPayload)
	}
	for l := Async; l <= All; l++ {
		p.latency[l] = p.m.ackLatency.WithLabelValues(l.String())
	}
	replyPrefix := nc.NewInbox() + "."
	p.batches = newBatcher(cfg, p.m)
	p.packer = &packer{
		envelope:      cfg.envelope,
		compression:   cfg.compression,
		compressAbove: cfg.compressAbove,
		maxEvent:      int(maxPayload) - 1024,
		idPrefix:      nuid.Next() + ".",
		replyPrefix:   replyPrefix,
		ratios:        p.m.compression,
	}
	p.all = newAllWaiter(allOptions{
		info:     streamInfos(js),
		resolve:  p.resolve,
		deadline: cfg.retryDeadline,
		poll:     cfg.allPoll,
		failed:   p.m.errors,
	})
	flight, err := newFlight(nc, flightOptions{
		replyPrefix:   replyPrefix,
		maxInFlight:   cfg.maxInFlight,
		maxBatches:    cfg.maxBatches,
		maxBytes:      cfg.maxBytesFlying,
		ackTimeout:    cfg.ackTimeout,
		retryDeadline: cfg.retryDeadline,
		burst:         max(1, cfg.maxInFlight/cfg.burstDiv),
		m:             p.m,
		log:           p.log,
		stop:          p.stop,
		settled:       p.complete,
	})
	if err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	p.flight = flight
	p.wg.Add(3)
	go func() { defer p.wg.Done(); p.sendLoop() }()
	go func() { defer p.wg.Done(); p.flight.sweepLoop() }()
	go func() { defer p.wg.Done(); p.all.loop(p.stop) }()
	return p, nil
}

// Publish publishes m and waits until it reaches its level: at Async it
// returns once m is buffered (blocking while the buffer is full), at Quorum
// once JetStream acknowledged it, at All once every replica holds it. An
// error may still leave the event stored (for example ErrReplicasBehind,
// or ctx ending after the event was sent).
func (p *Publisher) Publish(ctx context.Context, m Message) (Ack, error) {
	if p.levelOf(m) == Async {
		return Ack{}, p.enqueue(ctx, m, true, nil, nil)
	}
	f := &Future{done: make(chan struct{})}
	if err := p.enqueue(ctx, m, true, f, nil); err != nil {
		return Ack{}, err
	}
	ack, err := f.Wait(ctx)
	if err != nil && errors.Is(err, ctx.Err()) {
		return ack, fmt.Errorf("publish %s: waiting for %s: %w", m.Subject, p.levelOf(m), err)
	}
	return ack, err
}

// PublishAsync accepts m and returns once it is buffered, blocking while
// the buffer is full until ctx ends. The Future resolves when m reaches its
// level, and at Async when JetStream acknowledged it.
func (p *Publisher) PublishAsync(ctx context.Context, m Message) (*Future, error) {
	f := &Future{done: make(chan struct{})}
	if err := p.enqueue(ctx, m, true, f, nil); err != nil {
		return nil, err
	}
	return f, nil
}

// TryPublish accepts m without blocking: it returns ErrBufferFull when the
// buffer is full. done, if not nil, is called once with the outcome at m's
// level (Async: the PubAck), from the Publisher's goroutines.
func (p *Publisher) TryPublish(m Message, done func(Ack, error)) error {
	return p.enqueue(context.Background(), m, false, nil, done)
}

// Flush sends what is buffered without lingering and waits until every
// event accepted before the call has its outcome, or ctx ends.
func (p *Publisher) Flush(ctx context.Context) error {
	for _, e := range p.batches.flush() {
		select {
		case <-e.done:
		case <-ctx.Done():
			return fmt.Errorf("flush: %w", ctx.Err())
		}
	}
	return nil
}

// Close stops accepting events, flushes what is buffered (bounded by ctx),
// then stops. Events still without an outcome when ctx ends fail with
// ErrClosed. Close may be called more than once.
func (p *Publisher) Close(ctx context.Context) error {
	p.batches.close()
	err := p.Flush(ctx)
	p.stopOnce.Do(func() {
		close(p.stop)
		p.wg.Wait()
		p.flight.close()
		p.failAll(ErrClosed)
	})
	return err
}

// MaxInFlight returns the pipeline depth in use: WithMaxInFlight's value,
// or the default for the Publisher's mode.
func (p *Publisher) MaxInFlight() int { return p.cfg.maxInFlight }

func (p *Publisher) levelOf(m Message) Level {
	if m.Level == LevelDefault {
		return p.cfg.level
	}
	return m.Level
}

// enqueue validates m and hands it to the batcher.
func (p *Publisher) enqueue(ctx context.Context, m Message, wait bool, f *Future, done func(Ack, error)) error {
	if !validSubject(m.Subject) {
		return fmt.Errorf("publish %q: %w", m.Subject, ErrInvalidSubject)
	}
	level := p.levelOf(m)
	if level < Async || level > All {
		return fmt.Errorf("publish %s: %w: %d", m.Subject, ErrUnknownLevel, level)
	}
	size, err := p.packer.check(&m)
	if err != nil {
		return err
	}
	return p.batches.add(ctx, &pending{msg: m, level: level, size: size, fut: f, done: done}, wait)
}

// sendLoop takes batches, packs them and publishes them. It takes a
// pipeline slot before it takes a batch, and when batches in flight are
// capped a batch slot before it takes a batch still open (see
// batcher.take), so while either is full the open batch keeps growing:
// the group commit. Full batches skip the batch cap: they cannot grow, and
// holding them back would only leave the pipeline idle during a burst.
func (p *Publisher) sendLoop() {
	for {
		if !p.flight.acquire() {
			return
		}
		b, grouped := p.batches.take(p.stop, p.flight.batchSlots)
		if b == nil {
			p.flight.release()
			return
		}
		p.m.batchesOut.Inc()
		p.m.batchEvents.Observe(float64(len(b.events)))
		if !p.flight.send(p.packer.pack(b.events), grouped) {
			return
		}
	}
}

// complete resolves the events of a settled unit, handing those at level
// All to the replica check.
func (p *Publisher) complete(u *unit, ack Ack, err error) {
	var waitAll []*pending
	var acks []Ack
	now := time.Now()
	for i, e := range u.events {
		a := ack
		a.ID = e.msg.ID
		a.Count = 1
		if u.envelope {
			a.Index, a.Count = i, len(u.events)
		}
		if err == nil && e.level == All {
			waitAll = append(waitAll, e)
			acks = append(acks, a)
			continue
		}
		p.resolveAt(e, a, err, now)
	}
	if len(waitAll) > 0 {
		p.all.add(ack.Stream, ack.Seq, waitAll, acks)
	}
}

// resolve reports an event's outcome everywhere it is awaited.
func (p *Publisher) resolve(e *pending, ack Ack, err error) { p.resolveAt(e, ack, err, time.Now()) }

// resolveAt is resolve with the clock read once for all the events of a
// stream message: an envelope holds thousands.
func (p *Publisher) resolveAt(e *pending, ack Ack, err error, now time.Time) {
	if err == nil {
		p.latency[e.level].Observe(now.Sub(e.accepted).Seconds())
	} else if e.level == Async && e.done == nil && e.fut == nil {
		p.m.dropped.WithLabelValues("publish_failed").Inc()
	}
	if e.fut != nil {
		e.fut.ack, e.fut.err = ack, err
		close(e.fut.done)
	}
	if e.done != nil {
		e.done(ack, err)
	}
	if p.cfg.onResult != nil {
		p.cfg.onResult(&e.msg, ack, err)
	}
	if err != nil && e.fut == nil && e.done == nil && p.cfg.onResult == nil {
		p.log.Warn("async publish failed", "subject", e.msg.Subject, "err", err)
	}
	e.ep.release()
}

// failAll fails everything still buffered, in flight or waiting for the
// replicas, after the goroutines stopped.
func (p *Publisher) failAll(err error) {
	for _, e := range p.batches.drain() {
		p.resolve(e, Ack{}, err)
	}
	p.flight.failAll(err)
	p.all.failAll(err)
}
