// Package service is the lifecycle every platform service shares: it
// serves as a NATS micro service named platform-<name> (PING, INFO and
// STATS with nats.go micro's types, statistics counted when each request is
// answered) with versioned, described endpoints, decodes JSON or msgpack requests by Content-Type,
// answers every failure with one error body, counts requests in Prometheus,
// and emits heartbeats with the instance's load on hb.<service>.<instance>.
//
// Every endpoint is served twice: on its own subject in the service's
// queue group, where NATS picks a member at random, and on the instance's
// own subject inst.<service>.<instance>.<subject> (streams.InstanceSubject),
// so a router can choose the instance. Both reach the same handler, which
// sees the endpoint's subject either way.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/internal/version"
	"github.com/platform/platform/streams"
)

// Defaults.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultMaxRequestBytes   = 1 << 20
	DefaultRequestTimeout    = 30 * time.Second
)

// Handler handles one request. It answers through r.Respond or r.Fail,
// now or later from another goroutine; a request with no reply subject
// (fire-and-forget) is counted all the same.
type Handler func(ctx context.Context, r *Request)

// Func adapts a function that returns its answer into a Handler: a non-nil
// error is sent as the error body, otherwise the value is the response.
func Func(fn func(ctx context.Context, r *Request) (any, error)) Handler {
	return func(ctx context.Context, r *Request) {
		v, err := fn(ctx, r)
		if err != nil {
			r.Fail(err)
			return
		}
		r.Respond(v)
	}
}

// Endpoint is one request subject of a service.
type Endpoint struct {
	// Name is the endpoint's name in `nats micro info` (e.g. "status").
	Name string
	// Subject is what clients send to (e.g. "admin.status"); wildcards are
	// allowed.
	Subject string
	// Description says what the endpoint does; shown in `nats micro info`.
	Description string
	// Handler handles each request.
	Handler Handler
	// MaxBytes bounds a request body (default Options.MaxRequestBytes).
	MaxBytes int
	// Concurrency runs up to this many handler calls at once, each on its
	// own goroutine. 0 calls the handler inline, one request at a time,
	// which suits handlers that answer asynchronously.
	Concurrency int
	// Timeout bounds the context handed to the handler (default 30s;
	// negative: the handler gets the service's context, which spares a
	// timer per request to inline handlers that never block).
	Timeout time.Duration
	// OpaqueBody accepts a body of any Content-Type, for endpoints that
	// store what they receive without decoding it (ingest). Answers are
	// then msgpack when msgpack was sent, else JSON.
	OpaqueBody bool
	// PendingMsgs and PendingBytes bound the requests received and not yet
	// handled (default: nats.go's, 500,000 messages and 64 MiB; negative:
	// no bound). Beyond them nats.go drops requests and reports
	// nats.ErrSlowConsumer to the connection's error handler.
	PendingMsgs, PendingBytes int
}

// Options configure one service instance.
type Options struct {
	// Conn is the NATS connection the service serves on. Required.
	Conn *nats.Conn
	// Name is the service name without the "platform-" prefix (e.g.
	// "admin"). Required: letters, digits, '-' and '_'.
	Name string
	// Description says what the service does.
	Description string
	// Endpoints are the request subjects it serves.
	Endpoints []Endpoint
	// QueueGroup lets several instances share requests (default
	// "platform-<name>").
	QueueGroup string
	// Metadata is extra service metadata shown by `nats micro info`.
	Metadata map[string]string
	// HeartbeatInterval is how often the instance publishes its heartbeat
	// (default 1s; negative disables heartbeats).
	HeartbeatInterval time.Duration
	// MaxRequestBytes bounds request bodies (default 1 MiB).
	MaxRequestBytes int
	// Logger is the service's logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the request metrics (nil: not exported).
	Registerer prometheus.Registerer
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (o *Options) validate() error {
	if o.Conn == nil {
		return errors.New("service: nil NATS connection")
	}
	if !nameRE.MatchString(o.Name) {
		return fmt.Errorf("service: invalid name %q: use letters, digits, '-' and '_'", o.Name)
	}
	for _, e := range o.Endpoints {
		if e.Name == "" || e.Subject == "" || e.Handler == nil {
			return fmt.Errorf("service %s: endpoint %q needs a name, a subject and a handler", o.Name, e.Name)
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.QueueGroup == "" {
		o.QueueGroup = "platform-" + o.Name
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Service is one running instance of a platform service.
type Service struct {
	opts    Options
	log     *slog.Logger
	metrics *endpointMetrics
	load    *loadTracker
	ready   chan struct{}

	mu sync.Mutex
	id string
}

// New checks the options and returns a service ready to Run.
func New(opts Options) (*Service, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &Service{
		opts:    opts,
		log:     opts.Logger.With("component", opts.Name),
		metrics: newEndpointMetrics(opts.Registerer),
		load:    newLoadTracker(),
		ready:   make(chan struct{}),
	}, nil
}

// MicroName returns the NATS micro service name, "platform-<name>".
func (s *Service) MicroName() string { return "platform-" + s.opts.Name }

// ID returns the instance id once Run has registered the service, else "".
func (s *Service) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// Ready is closed once the service is registered and serving.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// HeartbeatSubject returns the subject this instance heartbeats on.
func (s *Service) HeartbeatSubject() string { return HeartbeatSubject(s.MicroName(), s.ID()) }

// HeartbeatSubject returns hb.<service>.<instance> (streams.HeartbeatSubject).
func HeartbeatSubject(service, instance string) string {
	return streams.HeartbeatSubject(service, instance)
}

// stopWait bounds how long a stopping service waits for the requests it
// already received to be handled.
const stopWait = 5 * time.Second

// Run registers the micro service, serves its endpoints and heartbeats until
// ctx is done, then says goodbye with a leaving heartbeat and drains the
// endpoints. It returns nil on a clean stop.
func (s *Service) Run(ctx context.Context) error {
	id := nuid.Next()
	in := newInstance(s.opts.Conn, micro.ServiceIdentity{
		Name: s.MicroName(), ID: id, Version: version.String(), Metadata: s.opts.Metadata,
	}, s.opts.Description)
	// The connection closing ends every subscription: Run then returns an
	// error, so the supervisor reports the service down instead of
	// heartbeating into a closed connection.
	stopped := s.opts.Conn.StatusChanged(nats.CLOSED)
	defer s.opts.Conn.RemoveStatusListener(stopped)
	var wg sync.WaitGroup
	fail := func(err error) error {
		in.stop(stopWait)
		wg.Wait()
		return err
	}
	for _, e := range s.opts.Endpoints {
		if err := s.addEndpoint(ctx, in, e, "", &wg); err != nil {
			return fail(fmt.Errorf("register %s endpoint %s: %w", s.MicroName(), e.Name, err))
		}
		if err := s.addEndpoint(ctx, in, e, streams.InstanceSubject(s.MicroName(), id, ""), &wg); err != nil {
			return fail(fmt.Errorf("register %s endpoint %s on its instance subject: %w", s.MicroName(), e.Name, err))
		}
	}
	if err := in.serveVerbs(); err != nil {
		return fail(fmt.Errorf("register %s: %w", s.MicroName(), err))
	}
	// Ready promises that requests from any connection reach the service:
	// the server must have processed the endpoint subscriptions first.
	if err := s.opts.Conn.FlushTimeout(5 * time.Second); err != nil {
		return fail(fmt.Errorf("register %s: flush subscriptions: %w", s.MicroName(), err))
	}
	s.mu.Lock()
	s.id = id
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("service ready", "micro", s.MicroName(), "id", id, "endpoints", len(s.opts.Endpoints))

	if s.opts.HeartbeatInterval > 0 {
		s.heartbeat(ctx, stopped)
	} else {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
	}
	var closed error
	if ctx.Err() == nil {
		closed = fmt.Errorf("%s stopped serving: its subscriptions were closed (connection %s)", s.MicroName(), strings.ToLower(s.opts.Conn.Status().String()))
	}
	in.stop(stopWait)
	wg.Wait()
	if closed != nil {
		s.log.Error("service stopped on its own", "err", closed)
		return closed
	}
	s.log.Info("service stopped")
	return nil
}

// InstanceEndpointSuffix ends the micro name of an endpoint's
// instance-addressed copy ("get" is also served as "get_instance").
const InstanceEndpointSuffix = "_instance"

// MetadataInstanceOf is the micro endpoint metadata key that marks an
// instance-addressed endpoint; its value is the endpoint's own subject.
const MetadataInstanceOf = "instance_of"

// addEndpoint registers e on its subject, or, with a non-empty instPrefix
// (inst.<service>.<instance>.), on instPrefix+subject for this instance
// alone.
func (s *Service) addEndpoint(ctx context.Context, in *instance, e Endpoint, instPrefix string, wg *sync.WaitGroup) error {
	maxBytes := e.MaxBytes
	if maxBytes == 0 {
		maxBytes = s.opts.MaxRequestBytes
	}
	timeout := e.Timeout
	if timeout == 0 {
		timeout = DefaultRequestTimeout
	}
	var sem chan struct{}
	if e.Concurrency > 0 {
		sem = make(chan struct{}, e.Concurrency)
	}
	labels := prometheus.Labels{"service": s.opts.Name, "endpoint": e.Name}
	requests := s.metrics.requests.With(labels)
	latency := s.metrics.latency.With(labels)
	inFlight := s.metrics.inFlight.With(labels)
	handle := func(ep *endpoint, m *nats.Msg) {
		r := &Request{
			msg:      m,
			subject:  strings.TrimPrefix(m.Subject, instPrefix),
			svc:      s,
			ep:       ep,
			endpoint: e.Name,
			start:    time.Now(),
			latency:  latency,
			inFlight: inFlight,
		}
		requests.Inc()
		inFlight.Inc()
		s.load.inFlight.Add(1)
		codec, cerr := CodecOf(m.Header)
		r.codec = codec
		if cerr != nil && !e.OpaqueBody {
			r.Fail(cerr)
			return
		}
		if len(m.Data) > maxBytes {
			r.Fail(Errorf(CodeTooLarge, "request body is %d bytes, the limit is %d", len(m.Data), maxBytes))
			return
		}
		run := func() {
			rctx := ctx
			if timeout > 0 {
				var cancel context.CancelFunc
				rctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			defer func() {
				if p := recover(); p != nil {
					s.log.Error("handler panicked", "endpoint", e.Name, "panic", p)
					r.Fail(Errorf(CodeInternal, "internal error in %s", e.Name))
				}
			}()
			e.Handler(rctx, r)
		}
		if sem == nil {
			run()
			return
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			run()
		}()
	}
	info := micro.EndpointInfo{
		Name: e.Name, Subject: e.Subject, QueueGroup: s.opts.QueueGroup,
		Metadata: map[string]string{
			"description": e.Description,
			"format":      "application/json, application/msgpack",
		},
	}
	if instPrefix != "" {
		info.Name, info.Subject = e.Name+InstanceEndpointSuffix, instPrefix+e.Subject
		info.Metadata[MetadataInstanceOf] = e.Subject
	}
	return in.subscribe(info, e.PendingMsgs, e.PendingBytes, handle)
}

// heartbeat publishes the instance's load every interval until ctx is done,
// then one last heartbeat with leaving set, or until the micro service
// stopped on its own.
func (s *Service) heartbeat(ctx context.Context, stopped <-chan nats.Status) {
	subject := s.HeartbeatSubject()
	interval := s.opts.HeartbeatInterval
	var seq atomic.Uint64
	send := func(leaving bool) {
		l := s.load.snapshot(time.Now())
		l.Seq = seq.Add(1)
		l.IntervalMS = interval.Milliseconds()
		l.Leaving = leaving
		b, err := JSON.Encode(l)
		if err == nil {
			err = s.opts.Conn.Publish(subject, b)
		}
		if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			s.log.Debug("heartbeat not sent", "err", err)
		}
	}
	send(false)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			send(true)
			return
		case <-stopped:
			return
		case <-t.C:
			send(false)
		}
	}
}
