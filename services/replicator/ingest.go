package replicator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// ingestEnvelopeInFlight is the ingest service's pipeline depth with
// envelopes and one batch in flight: 10 topics sharing the load measured
// 18.9k acked events/s with 64 against 16.5k with the Publisher's 4.
const ingestEnvelopeInFlight = 64

// ingestEnvelopeBatchEvents caps the events of one batch with envelopes:
// enough for 1 MiB of 64-byte events, so bytes bind first.
const ingestEnvelopeBatchEvents = 1 << 14

// ingestQueue is the queue group of every intake subscription.
const ingestQueue = "platform-replicator"

// ingestBulkBytesInFlight caps the bytes of fire-and-forget events in
// flight to the stream: a request's event queues behind them at the
// stream leader, so the cap bounds that wait (8 MiB: a quarter of a
// second at the 32 MB/s an fsync-always R3 stream stored 1 MiB events at
// on the reference machine).
const ingestBulkBytesInFlight = 8 << 20

// DefaultMaxEventBytes is the largest event the ingest service accepts.
const DefaultMaxEventBytes = 1 << 20

// Service is the ingest service: it takes events on ingest.<topic> and
// stores them in EVENTS as events.<topic>.
type Service struct {
	opts    Options
	log     *slog.Logger
	m       *metrics
	drops   *drops
	topics  *limiters
	clients *limiters
	pub     *Publisher // fire-and-forget events and requests at level async
	// requests is the lane of requests at quorum and all.
	requests *requestLane
	// bulk queues fire-and-forget events for take.
	bulk  *bulkLane
	ready chan struct{}
	// fireDone counts a fire-and-forget event that could not be stored;
	// made once, not per event.
	fireDone func(Ack, error)
	// lastSubject caches the last ingest subject's event subject: a burst
	// repeats one subject, whose parsing would otherwise cost a tenth of
	// the intake.
	lastSubject atomic.Pointer[subjectPair]
}

// subjectPair is an ingest subject and the event subject it maps to.
type subjectPair struct{ ingest, event string }

// IngestAck is the answer to an ingest request.
type IngestAck struct {
	// Stream is the stream that stored the event.
	Stream string `json:"stream"`
	// Seq is the stream sequence of its message (0 at level async: the
	// answer comes before the event is stored).
	Seq uint64 `json:"seq"`
	// Index is its position in an envelope, present only for an event
	// stored in one.
	Index *int `json:"index,omitempty"`
	// Duplicate says the stream already held an event with its Nats-Msg-Id.
	Duplicate bool `json:"duplicate"`
	// Consistency is set to "async" when the answer only means accepted.
	Consistency string `json:"consistency,omitempty"`
}

// New builds the ingest service; Run starts it.
func New(opts Options) (*Service, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	s := &Service{
		opts:    opts,
		log:     opts.Logger.With("component", "replicator"),
		m:       newMetrics(opts.Registerer),
		topics:  newLimiters(opts.TopicRate, opts.TopicBurst),
		clients: newLimiters(opts.ClientRate, opts.ClientBurst),
		ready:   make(chan struct{}),
	}
	s.drops = newDrops(s.log, s.m.dropped)
	s.fireDone = func(_ Ack, err error) {
		if err != nil {
			s.drops.add(reasonOf(err), 1)
		}
	}
	return s, nil
}

// Ready is closed once the service answers.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run serves until ctx ends, then stops taking events and drains what it
// accepted (up to 10 seconds) so every request is answered. It takes
// events on a connection of its own, opened with Conn's options.
func (s *Service) Run(ctx context.Context) error {
	pendingMsgs, pendingBytes, pubBuffer, reqBuffer := intakeLimits(s.opts.Buffer)
	popts := []PublisherOption{
		WithLevel(Async),
		WithCompression(s.opts.Compression, s.opts.CompressAbove),
		WithLinger(s.opts.Linger),
		WithRetry(DefaultAckTimeout, s.opts.RetryDeadline),
		WithLogger(s.opts.Logger),
		WithRegisterer(s.opts.Registerer),
	}
	batches := s.opts.BatchesInFlight
	if !s.opts.PerEvent {
		// A batch is one envelope per topic, capped in bytes below the
		// server's max payload; under a burst the event cap would bind
		// first for small events and halve what each commit stores.
		popts = append(popts, WithEnvelope(), WithBatch(ingestEnvelopeBatchEvents, DefaultMaxBatchBytes))
		if batches == 0 {
			batches = 1
		}
	}
	if batches > 0 {
		popts = append(popts, WithMaxBatchesInFlight(batches))
	}
	inFlight := s.opts.MaxInFlight
	if inFlight == 0 && !s.opts.PerEvent && batches > 0 {
		// One batch in flight holds an envelope per topic: let the
		// envelopes of many topics go out together.
		inFlight = ingestEnvelopeInFlight
	}
	if inFlight > 0 {
		popts = append(popts, WithMaxInFlight(inFlight))
	}

	subject := streams.IngestSubject(">")
	intake, _, err := dialIntake(s.opts.Conn, s.drops.asyncError(subject), s.log)
	if err != nil {
		return err
	}
	defer intake.Close()
	svc, err := service.New(service.Options{
		Conn:        intake,
		Name:        "replicator",
		Description: "Ingest: events published to ingest.<topic> are stored in EVENTS as events.<topic>",
		QueueGroup:  ingestQueue,
		Endpoints: []service.Endpoint{{
			Name:         "ingest",
			Subject:      subject,
			Description:  "Store an event; a request is answered once it is durable at Platform-Consistency (async|quorum|all, default quorum)",
			Handler:      s.handle,
			MaxBytes:     s.opts.MaxEventBytes,
			OpaqueBody:   true,
			Timeout:      -1, // handle never blocks: no timer per event
			PendingMsgs:  pendingMsgs,
			PendingBytes: pendingBytes,
		}},
		HeartbeatInterval: s.opts.HeartbeatInterval,
		Logger:            s.opts.Logger,
		Registerer:        s.opts.Registerer,
	})
	if err != nil {
		return err
	}
	pub, err := NewPublisher(s.opts.JS, append(popts, WithMaxBuffered(pubBuffer), WithMaxBytesInFlight(ingestBulkBytesInFlight))...)
	if err != nil {
		return fmt.Errorf("replicator: %w", err)
	}
	s.pub = pub
	// Requests get a Publisher of their own: queued behind the
	// fire-and-forget backlog they would wait for up to a GiB of it.
	reqPub, err := NewPublisher(s.opts.JS, append(popts, WithMaxBuffered(reqBuffer))...)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = pub.Close(cctx)
		return fmt.Errorf("replicator: request lane: %w", err)
	}
	s.requests = &requestLane{pub: reqPub}
	s.bulk = newBulkLane(pendingMsgs, pendingBytes)
	go s.bulk.run(s.takeEvent)

	// The service stops on its own context, after the loop below has
	// frozen the drop count: a drained subscription no longer tells it.
	svcCtx, stopSvc := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSvc()
	// The other intake connections join once the micro service is up:
	// they forward requests to its instance subject.
	intakeUp := make(chan struct{})
	var extra *extraIntake
	go func() {
		defer close(intakeUp)
		select {
		case <-svc.Ready():
		case <-svcCtx.Done():
			return
		}
		x, err := s.openExtraIntake(svc, subject, ingestQueue, pendingMsgs, pendingBytes)
		if err != nil {
			s.log.Warn("events are taken on one connection only", "err", err)
			return
		}
		extra = x
	}()
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		s.loop(ctx, svcCtx.Done(), intakeUp)
		s.drops.freeze()
		s.drops.warn(time.Now().Add(dropWarnEvery))
		stopSvc()
	}()
	err = svc.Run(svcCtx)
	stopSvc()
	<-loopDone
	<-intakeUp
	extra.close(10 * time.Second)
	s.bulk.close()
	<-s.bulk.done
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cerr := reqPub.Close(cctx); cerr != nil {
		s.log.Warn("requests left undrained at shutdown", "err", cerr)
	}
	if cerr := pub.Close(cctx); cerr != nil {
		s.log.Warn("events left undrained at shutdown", "err", cerr)
	}
	return err
}

// loop marks the service ready, then counts drops every second (warning
// about them at most every dropWarnEvery) and forgets idle rate-limit
// buckets every minute, until ctx ends or the service stopped on its own.
func (s *Service) loop(ctx context.Context, stopped, ready <-chan struct{}) {
	select {
	case <-ready:
		close(s.ready)
	case <-ctx.Done():
		return
	case <-stopped:
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastSweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stopped:
			return
		case now := <-t.C:
			s.drops.collect()
			s.drops.warn(now)
			if now.Sub(lastSweep) >= time.Minute {
				s.topics.sweep(now)
				s.clients.sweep(now)
				lastSweep = now
			}
		}
	}
}

// handle sorts arrivals on the intake subscription's goroutine: a
// fire-and-forget event goes to the bulk lane, a request is taken at once.
// It never blocks on JetStream: events are queued and requests answered
// from the Publisher's callback, so many requests share one batch (group
// commit).
func (s *Service) handle(_ context.Context, r *service.Request) {
	if !r.HasReply() {
		s.queueEvent(arrival{subject: r.Subject(), header: r.Header(), data: r.Data(), r: r})
		return
	}
	s.take(r)
}

// queueEvent hands a fire-and-forget event to the bulk lane, or counts it
// dropped when the lane is full.
func (s *Service) queueEvent(a arrival) {
	if reason := s.bulk.push(a); reason != "" {
		s.drop(a, service.Errorf(service.CodeUnavailable, "ingest intake is full").With("reason", reason))
	}
}

// takeEvent parses, admits and publishes one fire-and-forget event; the
// bulk lane's worker calls it.
func (s *Service) takeEvent(a arrival) {
	ev, _, refusal := s.parse(a)
	if refusal == nil && (s.topics != nil || s.clients != nil) {
		if wait := admit(s.topics, s.clients, ev.Subject, clientOf(a), time.Now()); wait > 0 {
			refusal = service.Errorf(service.CodeRateLimited, "rate limit exceeded for %s", ev.Subject).With("reason", "rate_limited")
		}
	}
	if refusal == nil {
		if err := s.pub.TryPublish(ev, s.fireDone); err != nil {
			refusal = publishError(err)
		}
	}
	if refusal != nil {
		s.drop(a, refusal)
		return
	}
	if a.r != nil {
		a.r.Respond(nil)
	}
}

// drop counts a fire-and-forget event as dropped for err's reason.
func (s *Service) drop(a arrival, err *service.Error) {
	reason := err.Code
	if v, ok := err.Fields["reason"].(string); ok {
		reason = v
	}
	s.drops.add(reason, 1)
	if a.r != nil {
		a.r.Fail(err)
	}
}

// take parses, admits and publishes one request's event.
func (s *Service) take(r *service.Request) {
	ev, level, refusal := s.parse(r)
	if refusal == nil && (s.topics != nil || s.clients != nil) {
		if wait := admit(s.topics, s.clients, ev.Subject, clientOf(r), time.Now()); wait > 0 {
			refusal = service.Errorf(service.CodeRateLimited, "rate limit exceeded for %s", ev.Subject).
				With("retry_after_ms", max(1, wait.Milliseconds()))
		}
	}
	if refusal != nil {
		s.refuse(r, refusal)
		return
	}
	if level == Async {
		err := s.pub.TryPublish(ev, func(_ Ack, err error) {
			if err != nil {
				s.m.errors.WithLabelValues(reasonOf(err)).Inc()
			}
		})
		if err != nil {
			s.refuse(r, publishError(err))
			return
		}
		r.Respond(IngestAck{Stream: streams.Events, Consistency: "async"})
		return
	}
	timeout, refusal := s.requestTimeout(r)
	if refusal != nil {
		s.refuse(r, refusal)
		return
	}
	s.handleRequest(r, ev, timeout)
}

// incoming is what parse reads of an arrival: a *service.Request or an
// arrival.
type incoming interface {
	Subject() string
	Header() nats.Header
	Data() []byte
	HasReply() bool
	Reply() string
}

// parse validates a request and turns it into a Message.
func (s *Service) parse(r incoming) (Message, Level, *service.Error) {
	subject := r.Subject()
	var eventSubject string
	if last := s.lastSubject.Load(); last != nil && last.ingest == subject {
		eventSubject = last.event
	} else {
		topic, err := streams.IngestTopic(subject)
		if err != nil {
			return Message{}, 0, service.Errorf(service.CodeBadRequest, "invalid subject %q: %v", subject, err).With("reason", "invalid_subject")
		}
		eventSubject = streams.EventSubject(topic)
		s.lastSubject.Store(&subjectPair{ingest: subject, event: eventSubject})
	}
	h := r.Header()
	level := Async
	if v := h.Get(streams.ConsistencyHeader); v != "" {
		l, err := ParseLevel(v)
		if err != nil {
			return Message{}, 0, service.Errorf(service.CodeBadRequest, "unknown %s %q: use async, quorum or all", streams.ConsistencyHeader, v).With("reason", "unknown_level")
		}
		level = l
	} else if r.HasReply() {
		level = Quorum
	}
	if !r.HasReply() {
		level = Async // nobody waits for more
	}
	if len(r.Data()) == 0 {
		return Message{}, 0, service.Errorf(service.CodeBadRequest, "empty event: send the event as the message body").With("reason", "empty")
	}
	if len(r.Data()) > s.opts.MaxEventBytes {
		return Message{}, 0, service.Errorf(service.CodeTooLarge, "event is %d bytes, the limit is %d", len(r.Data()), s.opts.MaxEventBytes).With("reason", "too_large")
	}
	var eh nats.Header
	for k, vs := range h {
		switch {
		case k == streams.ConsistencyHeader || k == streams.ClientHeader || k == streams.TimeoutHeader:
			continue
		case strings.EqualFold(k, streams.ContentEncodingHeader) || strings.HasPrefix(strings.ToLower(k), "platform-envelope"):
			return Message{}, 0, service.Errorf(service.CodeBadRequest, "header %s is reserved by the replicator", k).With("reason", "reserved_header")
		case !producerMayDirect(k):
			return Message{}, 0, service.Errorf(service.CodeBadRequest,
				"header %s is a JetStream directive a producer may not set: only Nats-Msg-Id and Nats-Expected-* pass", k).With("reason", "reserved_header")
		}
		if eh == nil {
			eh = nats.Header{}
		}
		eh[k] = vs
	}
	return Message{Subject: eventSubject, Data: r.Data(), Header: eh, Level: level}, level, nil
}

// producerMayDirect reports whether a producer may set header k. JetStream
// acts on Nats-* headers when it stores a message: a producer may ask
// for deduplication (Nats-Msg-Id) and conditional appends
// (Nats-Expected-*), which concern its own event; the others would purge
// the stream (Nats-Rollup), or drive batches, schedules, counters, TTLs
// or message tracing with the replicator's credentials. The check ignores
// case, so a spelling that some server or client would read as the
// directive is not stored as a look-alike either.
func producerMayDirect(k string) bool {
	l := strings.ToLower(k)
	return !strings.HasPrefix(l, "nats-") || l == "nats-msg-id" || strings.HasPrefix(l, "nats-expected-")
}

// clientOf identifies the producer: the Platform-Client header, else the
// reply subject without its last token (nats.go's per-connection inbox
// prefix, _INBOX.<id>), else "anonymous".
func clientOf(r incoming) string {
	if c := r.Header().Get(streams.ClientHeader); c != "" {
		return "client:" + c
	}
	if reply := r.Reply(); reply != "" {
		if i := strings.LastIndexByte(reply, '.'); i > 0 {
			return "inbox:" + reply[:i]
		}
		return "inbox:" + reply
	}
	return "anonymous"
}

// refuse answers a request with err, or counts a fire-and-forget event as
// dropped.
func (s *Service) refuse(r *service.Request, err *service.Error) {
	reason := err.Code
	if v, ok := err.Fields["reason"].(string); ok {
		reason = v
	}
	if r.HasReply() {
		s.m.errors.WithLabelValues(reason).Inc()
	} else {
		s.drops.add(reason, 1)
	}
	r.Fail(err)
}

// publishError maps a Publisher error to what a requester sees. Every
// unavailable answer says when to retry (retry_after_ms).
func publishError(err error) *service.Error {
	var ae *jetstream.APIError
	switch {
	case errors.Is(err, ErrBufferFull):
		return service.Errorf(service.CodeUnavailable, "ingest is overloaded, retry later").With("reason", "buffer_full").With("retry_after_ms", 100)
	case errors.Is(err, ErrTooLarge):
		return service.Errorf(service.CodeTooLarge, "%v", err).With("reason", "too_large")
	case errors.Is(err, ErrInvalidSubject), errors.Is(err, ErrReservedHeader):
		return service.Errorf(service.CodeBadRequest, "%v", err).With("reason", "bad_request")
	case errors.Is(err, ErrClosed):
		return service.Errorf(service.CodeUnavailable, "ingest is shutting down, retry").With("reason", "closed").With("retry_after_ms", 100)
	case errors.Is(err, ErrReplicasBehind):
		return service.Errorf(service.CodeTimeout, "%v", err).With("reason", "replicas_behind")
	case jsapi.IsStorageFull(err):
		return service.Errorf(service.CodeUnavailable, "JetStream storage is full, retry once space is freed: %v", err).With("reason", "storage_full").With("retry_after_ms", 10_000)
	case errors.Is(err, ErrDeadline):
		return service.Errorf(service.CodeUnavailable, "%v", err).With("reason", "deadline").With("retry_after_ms", 1000)
	case errors.As(err, &ae) && ae.Code >= 400 && ae.Code < 500: // the stream refused it for good
		return service.Errorf(service.CodeBadRequest, "%v", err).With("reason", "rejected")
	}
	return service.Errorf(service.CodeInternal, "%v", err).With("reason", "internal")
}

func reasonOf(err error) string {
	if v, ok := publishError(err).Fields["reason"].(string); ok {
		return v
	}
	return "internal"
}
