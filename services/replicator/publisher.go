package replicator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/internal/jsapi"
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

// pending is one accepted event until its outcome.
type pending struct {
	msg      Message
	level    Level
	size     int
	accepted time.Time
	fut      *Future
	done     func(Ack, error)
	ep       *epoch
}

// unit is one stream message in flight: one event or an envelope.
type unit struct {
	key      uint64
	msg      *nats.Msg
	events   []*pending
	envelope bool
	first    time.Time
	sent     time.Time
	attempts int
	// group is the batch the unit was sent with, when batches in flight
	// are capped.
	group *sendGroup
}

// sendGroup counts the units of one batch still in flight; the last to
// settle frees the batch's slot.
type sendGroup struct{ left atomic.Int32 }

// batch is a group of accepted events sent together.
type batch struct {
	events []*pending
	bytes  int
	first  time.Time
}

// Publisher publishes events to JetStream in batches, with a bounded
// pipeline of acknowledgements, compression and idempotent retries. It is
// safe for concurrent use. Make one with NewPublisher and Close it.
type Publisher struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg config
	log *slog.Logger
	m   *metrics

	idPrefix    string
	replyPrefix string
	maxEvent    int
	sub         *nats.Subscription
	slots       chan struct{}
	batchSlots  chan struct{} // nil: batches in flight are not capped
	nextKey     atomic.Uint64
	all         *allWaiter
	// levelMetrics caches the per-level series, indexed by Level.
	levelMetrics [All + 1]struct {
		in      prometheus.Counter
		latency prometheus.Observer
	}

	mu       sync.Mutex
	open     *batch
	sealed   []*batch
	buffered int
	bufWait  chan struct{}
	closed   bool
	flushNow bool
	ep       *epoch
	epochs   []*epoch
	wake     chan struct{}

	flightMu sync.Mutex
	inflight map[uint64]*unit

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// NewPublisher starts a Publisher on js's connection. It subscribes to a
// private inbox for acknowledgements and starts its sender.
func NewPublisher(js jetstream.JetStream, opts ...Option) (*Publisher, error) {
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
	maxPayload := int(nc.MaxPayload())
	if cfg.envelope && cfg.maxBatchBytes > maxPayload-4096 {
		return nil, fmt.Errorf("new publisher: max batch bytes %d must stay below the server's max payload %d", cfg.maxBatchBytes, maxPayload)
	}
	p := &Publisher{
		nc:          nc,
		js:          js,
		cfg:         cfg,
		log:         cfg.logger.With("component", "replicator.publisher"),
		m:           newMetrics(cfg.registerer),
		idPrefix:    nuid.Next() + ".",
		replyPrefix: nc.NewInbox() + ".",
		maxEvent:    maxPayload - 1024,
		slots:       make(chan struct{}, cfg.maxInFlight),
		open:        &batch{},
		ep:          newEpoch(),
		wake:        make(chan struct{}, 1),
		inflight:    make(map[uint64]*unit, cfg.maxInFlight),
		stop:        make(chan struct{}),
	}
	if cfg.maxBatches > 0 {
		p.batchSlots = make(chan struct{}, cfg.maxBatches)
	}
	for l := Async; l <= All; l++ {
		p.levelMetrics[l].in = p.m.eventsIn.WithLabelValues(l.String())
		p.levelMetrics[l].latency = p.m.ackLatency.WithLabelValues(l.String())
	}
	sub, err := nc.Subscribe(p.replyPrefix+"*", p.onAck)
	if err != nil {
		return nil, fmt.Errorf("new publisher: subscribe to acks: %w", err)
	}
	// Acks are bounded by the pipeline depth; never drop one as a slow consumer.
	_ = sub.SetPendingLimits(-1, -1)
	p.sub = sub
	p.all = newAllWaiter(p)
	p.wg.Add(3)
	go p.sendLoop()
	go p.sweepLoop()
	go p.all.loop()
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
	p.mu.Lock()
	p.flushNow = true
	old := p.ep
	p.ep = newEpoch()
	old.seal()
	wait := append(p.epochs[:0:0], p.epochs...)
	wait = append(wait, old)
	live := p.epochs[:0]
	for _, e := range wait {
		if !e.finished() {
			live = append(live, e)
		}
	}
	p.epochs = live
	p.mu.Unlock()
	p.signal()
	for _, e := range wait {
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
	p.mu.Lock()
	p.closed = true
	if p.bufWait != nil {
		close(p.bufWait)
		p.bufWait = nil
	}
	p.mu.Unlock()
	err := p.Flush(ctx)
	p.stopOnce.Do(func() {
		close(p.stop)
		p.wg.Wait()
		_ = p.sub.Unsubscribe()
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

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// enqueue validates m and adds it to the open batch.
func (p *Publisher) enqueue(ctx context.Context, m Message, wait bool, f *Future, done func(Ack, error)) error {
	if !validSubject(m.Subject) {
		return fmt.Errorf("publish %q: %w", m.Subject, ErrInvalidSubject)
	}
	level := p.levelOf(m)
	if level < Async || level > All {
		return fmt.Errorf("publish %s: %w: %d", m.Subject, ErrUnknownLevel, level)
	}
	size := len(m.Data)
	for k, vs := range m.Header {
		if strings.EqualFold(k, HeaderContentEncoding) || strings.HasPrefix(strings.ToLower(k), "platform-envelope") {
			return fmt.Errorf("publish %s: %w: %s", m.Subject, ErrReservedHeader, k)
		}
		size += len(k) + 4
		for _, v := range vs {
			size += len(v) + 2
		}
		if m.ID == "" && k == jetstream.MsgIDHeader && len(vs) > 0 {
			m.ID = vs[0]
		}
	}
	if size+len(m.Subject)+len(m.ID) > p.maxEvent {
		return fmt.Errorf("publish %s: %w: %d bytes, the limit is %d", m.Subject, ErrTooLarge, size, p.maxEvent)
	}
	pe := &pending{msg: m, level: level, size: size, fut: f, done: done}
	p.mu.Lock()
	for !p.closed && p.buffered > 0 && p.buffered+size > p.cfg.maxBuffered {
		if !wait {
			p.mu.Unlock()
			return fmt.Errorf("publish %s: %w", m.Subject, ErrBufferFull)
		}
		if p.bufWait == nil {
			p.bufWait = make(chan struct{})
		}
		ch := p.bufWait
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("publish %s: waiting for buffer space: %w", m.Subject, ctx.Err())
		}
		p.mu.Lock()
	}
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("publish %s: %w", m.Subject, ErrClosed)
	}
	now := time.Now()
	pe.accepted = now
	pe.ep = p.ep
	p.ep.add()
	b := p.open
	if len(b.events) > 0 && (len(b.events) >= p.cfg.maxBatchEvents || b.bytes+size > p.cfg.maxBatchBytes) {
		p.sealed = append(p.sealed, b)
		b = &batch{}
		p.open = b
	}
	if len(b.events) == 0 {
		b.first = now
	}
	b.events = append(b.events, pe)
	b.bytes += size
	p.buffered += size
	p.mu.Unlock()
	p.levelMetrics[level].in.Inc()
	p.signal()
	return nil
}

// takeBatch returns the next batch to send, waiting for one (and for the
// linger time) until the Publisher stops.
func (p *Publisher) takeBatch() *batch {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		p.mu.Lock()
		var b *batch
		var lingerLeft time.Duration
		switch {
		case len(p.sealed) > 0:
			b = p.sealed[0]
			p.sealed[0] = nil
			p.sealed = p.sealed[1:]
		case len(p.open.events) > 0:
			lingerLeft = p.cfg.linger - time.Since(p.open.first)
			if lingerLeft <= 0 || p.flushNow || p.closed {
				b = p.open
				p.open = &batch{}
			}
		default:
			p.flushNow = false
		}
		if b != nil {
			p.buffered -= b.bytes
			if p.bufWait != nil {
				close(p.bufWait)
				p.bufWait = nil
			}
			p.mu.Unlock()
			return b
		}
		p.mu.Unlock()
		var tc <-chan time.Time
		if lingerLeft > 0 {
			if timer == nil {
				timer = time.NewTimer(lingerLeft)
			} else {
				timer.Reset(lingerLeft)
			}
			tc = timer.C
		}
		select {
		case <-p.wake:
		case <-tc:
		case <-p.stop:
			return nil
		}
	}
}

// acquire takes a pipeline slot, or reports false when the Publisher stops.
func (p *Publisher) acquire() bool {
	select {
	case p.slots <- struct{}{}:
		p.m.inFlightMsgs.Inc()
		return true
	case <-p.stop:
		return false
	}
}

func (p *Publisher) release() {
	<-p.slots
	p.m.inFlightMsgs.Dec()
}

// acquireBatch takes a batch slot when batches in flight are capped, or
// reports false when the Publisher stops.
func (p *Publisher) acquireBatch() bool {
	if p.batchSlots == nil {
		return true
	}
	select {
	case p.batchSlots <- struct{}{}:
		return true
	case <-p.stop:
		return false
	}
}

func (p *Publisher) releaseBatch() {
	if p.batchSlots != nil {
		<-p.batchSlots
	}
}

// sendLoop takes batches and publishes them. It takes a batch slot (when
// batches in flight are capped) and a pipeline slot before it takes a
// batch, so while either is full the open batch keeps growing: the group
// commit.
func (p *Publisher) sendLoop() {
	defer p.wg.Done()
	for {
		if !p.acquireBatch() {
			return
		}
		if !p.acquire() {
			p.releaseBatch()
			return
		}
		b := p.takeBatch()
		if b == nil {
			p.release()
			p.releaseBatch()
			return
		}
		p.m.batchesOut.Inc()
		p.m.batchEvents.Observe(float64(len(b.events)))
		units := p.pack(b)
		if p.batchSlots != nil {
			g := &sendGroup{}
			g.left.Store(int32(len(units)))
			for _, u := range units {
				u.group = g
			}
		}
		// Send in bursts: take the slots for a group of messages first,
		// then write them back to back. The stream leader then proposes
		// them to RAFT together (one append, one fsync per replica)
		// instead of one by one as acks trickle back.
		burst := max(1, p.cfg.maxInFlight/p.cfg.burstDiv)
		held := 1
		for i := 0; i < len(units); {
			n := min(burst, len(units)-i)
			for held < n {
				if !p.acquire() {
					for range held {
						p.release()
					}
					for _, rest := range units[i:] {
						p.settle(rest, Ack{}, ErrClosed, false)
					}
					return
				}
				held++
			}
			now := time.Now()
			for _, u := range units[i : i+n] {
				u.first = now
				p.publishUnit(u)
			}
			i += n
			held = 0
		}
	}
}

// pack turns a batch into stream messages.
func (p *Publisher) pack(b *batch) []*unit {
	if !p.cfg.envelope {
		units := make([]*unit, 0, len(b.events))
		for _, e := range b.events {
			units = append(units, p.single(e))
		}
		return units
	}
	// Group by subject, keeping arrival order within a subject.
	var units []*unit
	groups := make(map[string][]*pending)
	var order []string
	for _, e := range b.events {
		if e.msg.ID != "" || hasNatsHeader(e.msg.Header) {
			units = append(units, p.single(e))
			continue
		}
		if _, ok := groups[e.msg.Subject]; !ok {
			order = append(order, e.msg.Subject)
		}
		groups[e.msg.Subject] = append(groups[e.msg.Subject], e)
	}
	for _, subj := range order {
		evs := groups[subj]
		if len(evs) == 1 {
			units = append(units, p.single(evs[0]))
			continue
		}
		units = append(units, p.envelope(subj, evs))
	}
	return units
}

func hasNatsHeader(h nats.Header) bool {
	for k := range h {
		if len(k) > 5 && strings.EqualFold(k[:5], "nats-") {
			return true
		}
	}
	return false
}

// single makes the stream message of one event.
func (p *Publisher) single(e *pending) *unit {
	key := p.nextKey.Add(1)
	if e.msg.ID == "" {
		e.msg.ID = p.idPrefix + strconv.FormatUint(key, 36)
	}
	h := make(nats.Header, len(e.msg.Header)+2)
	for k, v := range e.msg.Header {
		h[k] = v
	}
	h[jetstream.MsgIDHeader] = []string{e.msg.ID}
	data := e.msg.Data
	if p.cfg.compression != NoCompression && len(data) >= p.cfg.compressAbove && len(data) > 0 {
		if c := p.cfg.compression.Compress(data); c != nil {
			p.m.compression.Observe(float64(len(data)) / float64(len(c)))
			data = c
			h[HeaderContentEncoding] = []string{p.cfg.compression.String()}
		}
	}
	return &unit{
		key:    key,
		events: []*pending{e},
		msg:    &nats.Msg{Subject: e.msg.Subject, Reply: p.replyPrefix + strconv.FormatUint(key, 36), Header: h, Data: data},
	}
}

// envelope packs events sharing a subject into one stream message.
func (p *Publisher) envelope(subj string, evs []*pending) *unit {
	key := p.nextKey.Add(1)
	id := p.idPrefix + strconv.FormatUint(key, 36)
	n := 5
	for _, e := range evs {
		n += entrySize(e.msg.Data, e.msg.Header)
	}
	buf := appendEnvelopeHeader(make([]byte, 0, n), len(evs))
	for _, e := range evs {
		buf = appendEntry(buf, e.msg.Data, e.msg.Header)
	}
	h := nats.Header{
		jetstream.MsgIDHeader: []string{id},
		HeaderEnvelope:        []string{envelopeVersion},
		HeaderEnvelopeCount:   []string{strconv.Itoa(len(evs))},
	}
	data := buf
	if p.cfg.compression != NoCompression && len(buf) >= p.cfg.compressAbove {
		if c := p.cfg.compression.Compress(buf); c != nil {
			p.m.compression.Observe(float64(len(buf)) / float64(len(c)))
			data = c
			h[HeaderContentEncoding] = []string{p.cfg.compression.String()}
		}
	}
	for i, e := range evs {
		e.msg.ID = id + ":" + strconv.Itoa(i)
	}
	return &unit{
		key:      key,
		events:   evs,
		envelope: true,
		msg:      &nats.Msg{Subject: subj, Reply: p.replyPrefix + strconv.FormatUint(key, 36), Header: h, Data: data},
	}
}

// publishUnit sends one attempt of u. The unit is registered before it is
// sent so that an ack arriving at once finds it.
func (p *Publisher) publishUnit(u *unit) {
	select {
	case <-p.stop:
		p.finish(u, Ack{}, fmt.Errorf("publish %s: %w", u.msg.Subject, ErrClosed))
		return
	default:
	}
	u.attempts++
	u.sent = time.Now()
	p.flightMu.Lock()
	p.inflight[u.key] = u
	p.flightMu.Unlock()
	if err := p.nc.PublishMsg(u.msg); err != nil {
		p.flightMu.Lock()
		_, mine := p.inflight[u.key]
		delete(p.inflight, u.key)
		p.flightMu.Unlock()
		if mine {
			p.retry(u, fmt.Errorf("publish: %w", err))
		}
	}
}

var (
	errAckTimeout   = errors.New("no acknowledgement within the ack timeout")
	errNoResponders = errors.New("no stream leader is listening (503 no responders)")
)

// onAck handles every acknowledgement on the Publisher's inbox.
func (p *Publisher) onAck(m *nats.Msg) {
	key, err := strconv.ParseUint(m.Subject[len(p.replyPrefix):], 36, 64)
	if err != nil {
		return
	}
	p.flightMu.Lock()
	u := p.inflight[key]
	delete(p.inflight, key)
	p.flightMu.Unlock()
	if u == nil {
		return // a late answer to an attempt already retried or finished
	}
	pa, err := parseAck(m)
	if err != nil {
		p.retry(u, err)
		return
	}
	ack := Ack{Stream: pa.Stream, Seq: pa.Seq, Duplicate: pa.Duplicate && u.attempts == 1}
	p.finish(u, ack, nil)
}

// parseAck reads the answer to one publish: a PubAck, an API error (a
// *jetstream.APIError), no responders, or a body that is no answer.
func parseAck(m *nats.Msg) (jsapi.PubAck, error) {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return jsapi.PubAck{}, errNoResponders
	}
	pa, err := jsapi.ParsePubAck(m.Data)
	if err != nil {
		return jsapi.PubAck{}, fmt.Errorf("bad acknowledgement: %w", err)
	}
	if err := pa.Err(); err != nil {
		return jsapi.PubAck{}, err
	}
	return pa, nil
}

// retryBackoff spaces the attempts of one stream message: 25ms doubling up
// to 1s, jittered.
var retryBackoff = jsapi.Backoff{Base: 25 * time.Millisecond, Max: time.Second}

// retry publishes u again after a backoff, or fails it when the error is
// permanent or the deadline would pass. An API error is retried when
// jsapi.IsTransient says another attempt may succeed; any other failure
// (a lost ack, no responders, a connection hiccup) is retried unless the
// connection is closed or the message can never be sent, since message
// ids make a retry idempotent.
func (p *Publisher) retry(u *unit, cause error) {
	var ae *jetstream.APIError
	if errors.As(cause, &ae) && !jsapi.IsTransient(cause) {
		p.m.errors.WithLabelValues("rejected").Inc()
		p.finish(u, Ack{}, fmt.Errorf("publish %s: %w", u.msg.Subject, cause))
		return
	}
	if errors.Is(cause, nats.ErrConnectionClosed) || errors.Is(cause, nats.ErrMaxPayload) || errors.Is(cause, nats.ErrBadSubject) {
		p.m.errors.WithLabelValues("connection").Inc()
		p.finish(u, Ack{}, fmt.Errorf("publish %s: %w", u.msg.Subject, cause))
		return
	}
	backoff := retryBackoff.Delay(u.attempts - 1)
	if time.Since(u.first)+backoff > p.cfg.retryDeadline {
		p.m.errors.WithLabelValues("deadline").Inc()
		p.finish(u, Ack{}, fmt.Errorf("publish %s after %d attempts: %w: %w", u.msg.Subject, u.attempts, ErrDeadline, cause))
		return
	}
	select {
	case <-p.stop:
		p.finish(u, Ack{}, fmt.Errorf("publish %s: %w (last error: %v)", u.msg.Subject, ErrClosed, cause))
		return
	default:
	}
	p.m.retries.Inc()
	p.log.Debug("retrying publish", "subject", u.msg.Subject, "attempt", u.attempts, "err", cause)
	time.AfterFunc(backoff, func() { p.publishUnit(u) })
}

// sweepLoop retries attempts whose ack did not come in time.
func (p *Publisher) sweepLoop() {
	defer p.wg.Done()
	t := time.NewTicker(max(p.cfg.ackTimeout/4, 5*time.Millisecond))
	defer t.Stop()
	var expired []*unit
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			expired = expired[:0]
			p.flightMu.Lock()
			for k, u := range p.inflight {
				if now.Sub(u.sent) > p.cfg.ackTimeout {
					delete(p.inflight, k)
					expired = append(expired, u)
				}
			}
			p.flightMu.Unlock()
			for _, u := range expired {
				p.retry(u, errAckTimeout)
			}
		}
	}
}

// finish ends u's flight: it frees the pipeline slot and resolves the
// events, handing those at level All to the replica check.
func (p *Publisher) finish(u *unit, ack Ack, err error) { p.settle(u, ack, err, true) }

// settle is finish for a unit that holds a pipeline slot (held) or not.
func (p *Publisher) settle(u *unit, ack Ack, err error, held bool) {
	if held {
		p.release()
	}
	if u.group != nil && u.group.left.Add(-1) == 0 {
		p.releaseBatch()
	}
	var waitAll []*pending
	var acks []Ack
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
		p.resolve(e, a, err)
	}
	if len(waitAll) > 0 {
		p.all.add(ack.Stream, ack.Seq, waitAll, acks)
	}
}

// resolve reports an event's outcome everywhere it is awaited.
func (p *Publisher) resolve(e *pending, ack Ack, err error) {
	if err == nil {
		p.levelMetrics[e.level].latency.Observe(time.Since(e.accepted).Seconds())
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

// failAll fails everything still buffered or in flight, after the
// goroutines stopped.
func (p *Publisher) failAll(err error) {
	p.mu.Lock()
	var rest []*pending
	for _, b := range p.sealed {
		rest = append(rest, b.events...)
	}
	rest = append(rest, p.open.events...)
	p.sealed, p.open = nil, &batch{}
	p.mu.Unlock()
	for _, e := range rest {
		p.resolve(e, Ack{}, err)
	}
	p.flightMu.Lock()
	units := make([]*unit, 0, len(p.inflight))
	for k, u := range p.inflight {
		delete(p.inflight, k)
		units = append(units, u)
	}
	p.flightMu.Unlock()
	for _, u := range units {
		p.finish(u, Ack{}, err)
	}
	p.all.failAll(err)
}

// epoch counts the events accepted between two flushes.
type epoch struct {
	n    atomic.Int64
	done chan struct{}
}

func newEpoch() *epoch {
	e := &epoch{done: make(chan struct{})}
	e.n.Store(1) // the open epoch's own reference, dropped by seal
	return e
}

func (e *epoch) add()  { e.n.Add(1) }
func (e *epoch) seal() { e.release() }
func (e *epoch) release() {
	if e.n.Add(-1) == 0 {
		close(e.done)
	}
}
func (e *epoch) finished() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}
