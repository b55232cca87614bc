// Package alerting evaluates alerting rules over the platform's own signals
// (heartbeat load, the detector's view, stream state, event counts per
// window, metrics) and takes firing alerts through Alertmanager's model:
// grouping, inhibition, silences in KV SILENCES and a notification log in
// KV NFLOG so that several instances notify once; receivers are stream
// ALERTS and webhooks, and alerts are forwarded to real Alertmanagers. It
// speaks enough of Alertmanager's API v2 for Prometheus and amtool.
package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/kvfollow"
	"github.com/platform/platform/lease"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// Options configure one alerting instance.
type Options struct {
	// Conn is the NATS connection. Required.
	Conn *nats.Conn
	// RulesFile is the rules file (deploy/alerts.yaml); "" runs the
	// default rules (DefaultConfig).
	RulesFile string
	// HTTPAddr serves Alertmanager's API v2 ("" disables it).
	HTTPAddr string
	// WebConfigFile is Alertmanager's web configuration for the HTTP API
	// (the format of its --web.config.file: basic auth users, TLS); ""
	// serves plain HTTP to anyone who can reach HTTPAddr.
	WebConfigFile string
	// RequireWebConfig refuses an HTTPAddr other hosts can reach without a
	// WebConfigFile: set when NATS access is authenticated, so the HTTP API
	// is no way around the roles.
	RequireWebConfig bool
	// ExternalURL is reported in notifications (default http://HTTPAddr).
	ExternalURL string
	// Gatherer is read by rules over metrics (nil: no metrics series).
	Gatherer prometheus.Gatherer
	// HeartbeatInterval is the instance's heartbeat interval (default 1s).
	HeartbeatInterval time.Duration
	// FlushInterval is how often groups are checked for a due flush
	// (default 250ms): the precision of group_wait and group_interval.
	FlushInterval time.Duration
	// StreamPollInterval is how often stream and consumer state is read
	// (default 10s).
	StreamPollInterval time.Duration
	// SilenceRetention keeps expired silences this long (default 120h).
	SilenceRetention time.Duration
	// LeaseTTL and LeaseRenew time the active instance's lease (default
	// 6s and 1s).
	LeaseTTL, LeaseRenew time.Duration
	// Logger is the logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the service's metrics (nil: not exported).
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() {
	if o.FlushInterval == 0 {
		o.FlushInterval = 250 * time.Millisecond
	}
	if o.StreamPollInterval == 0 {
		o.StreamPollInterval = 10 * time.Second
	}
	if o.SilenceRetention == 0 {
		o.SilenceRetention = 120 * time.Hour
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 6 * time.Second
	}
	if o.LeaseRenew == 0 {
		o.LeaseRenew = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ExternalURL == "" && o.HTTPAddr != "" {
		o.ExternalURL = "http://" + o.HTTPAddr
	}
}

// validate checks filled options; the lease settings are checked by
// lease.NewElected, also in New.
func (o *Options) validate() error {
	var errs []error
	if o.Conn == nil {
		errs = append(errs, errors.New("nil NATS connection"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"flush interval", o.FlushInterval}, {"stream poll interval", o.StreamPollInterval}, {"silence retention", o.SilenceRetention}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %s must be positive", d.name, d.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("alerting options: %w", err)
	}
	return nil
}

// Service is one alerting instance. Every instance follows the signals,
// evaluates the rules and keeps the groups; only the lease holder sends,
// and the notification log makes a handover send nothing twice.
type Service struct {
	opts     Options
	log      *slog.Logger
	m        *metrics
	signals  *Signals
	silences *Silences
	engine   *Engine
	notifier *Notifier
	svc      *service.Service
	elected  *lease.Elected // the active instance sends
	ready    chan struct{}
	httpAddr string
	mu       sync.Mutex
	js       jetstream.JetStream
	silKV    jetstream.KeyValue
	start    time.Time
}

// New loads the rules and returns an instance ready to Run.
func New(opts Options) (*Service, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := opts.validateWeb(); err != nil {
		return nil, fmt.Errorf("alerting: %w", err)
	}
	cfg, err := loadOrDefault(opts.RulesFile)
	if err != nil {
		return nil, fmt.Errorf("alerting: %w", err)
	}
	s := &Service{opts: opts, log: opts.Logger.With("component", "alerting"), m: newMetrics(opts.Registerer),
		signals: NewSignals(), silences: NewSilences(), ready: make(chan struct{}), start: time.Now()}
	s.elected, err = lease.NewElected(lease.ElectedOptions{
		Key: lease.KeyAlerting, TTL: opts.LeaseTTL, Renew: opts.LeaseRenew,
		Gauge: s.m.active, OnChange: s.setActive, Logger: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("alerting: %w", err)
	}
	s.engine = NewEngine(cfg, s.signals, s.silences, s.start)
	if hold := SendHold(cfg); hold > 0 {
		s.log.Info("notifications held after start, until inhibiting alerts with a for have had it", "hold", hold)
	}
	s.notifier = &Notifier{Client: &http.Client{Timeout: 10 * time.Second}, ExternalURL: opts.ExternalURL,
		Retry: &jsapi.Retry{Backoff: jsapi.Backoff{Base: time.Second, Max: 30 * time.Second}}}
	s.svc, err = service.New(service.Options{
		Conn: opts.Conn, Name: "alerting",
		Description:       "Alerting rules, grouping, inhibition and silences, compatible with Alertmanager",
		Endpoints:         s.endpoints(),
		HeartbeatInterval: opts.HeartbeatInterval, Logger: opts.Logger, Registerer: opts.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("alerting: %w", err)
	}
	return s, nil
}

func loadOrDefault(path string) (*Config, error) {
	if path == "" {
		return ParseConfig([]byte(DefaultRules))
	}
	return LoadConfig(path)
}

// Ready is closed once the instance serves.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Active reports whether this instance holds the lease and sends.
func (s *Service) Active() bool { return s.elected.Active() }

// HTTPAddr returns the API's address once ready ("" when disabled).
func (s *Service) HTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpAddr
}

// Engine returns the instance's pipeline.
func (s *Service) Engine() *Engine { return s.engine }

// Reload reads the rules file again; on error the rules in force stay.
func (s *Service) Reload() error {
	cfg, err := loadOrDefault(s.opts.RulesFile)
	if err != nil {
		s.m.reloads.WithLabelValues("failed").Inc()
		s.log.Error("rules not reloaded; the previous rules stay", "err", err)
		return err
	}
	s.engine.SetConfig(cfg)
	s.m.reloads.WithLabelValues("ok").Inc()
	s.log.Info("rules reloaded", "rules", len(cfg.Rules))
	return nil
}

// Run serves until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nc := s.opts.Conn
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("alerting: jetstream: %w", err)
	}
	s.js, s.notifier.JS = js, js
	open := func(bucket string) (jetstream.KeyValue, error) {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			return nil, fmt.Errorf("alerting: open bucket %s: %w", bucket, err)
		}
		return kv, nil
	}
	membersKV, err := open(streams.BucketMembers)
	if err != nil {
		return err
	}
	leasesKV, err := open(streams.BucketLeases)
	if err != nil {
		return err
	}
	if s.silKV, err = open(streams.BucketSilences); err != nil {
		return err
	}
	nflogKV, err := open(streams.BucketNFLog)
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if err := s.elected.Serve(ctx, &wg, s.svc); err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	s.log = s.log.With("id", s.svc.ID())

	subs, err := s.subscribe(nc)
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	if err != nil {
		return err
	}
	members, err := kvfollow.Start(ctx, membersKV, kvfollow.Options{Logger: s.log,
		Put: func(e jetstream.KeyValueEntry) {
			if m, err := membership.Decode(e.Key(), e.Value()); err == nil {
				s.signals.Member(m)
			}
		},
		Delete: func(e jetstream.KeyValueEntry) { s.signals.ForgetMember(e.Key()) }})
	if err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	defer members.Stop()
	sils, err := kvfollow.Start(ctx, s.silKV, kvfollow.Options{Logger: s.log,
		Put:    func(e jetstream.KeyValueEntry) { s.loadSilence(e.Key(), e.Value()) },
		Delete: func(e jetstream.KeyValueEntry) { s.silences.Delete(e.Key()) }})
	if err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	defer sils.Stop()
	if s.opts.HTTPAddr != "" {
		stop, err := s.serveHTTP()
		if err != nil {
			return fmt.Errorf("alerting: %w", err)
		}
		defer stop()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := s.elected.Campaign(ctx, &wg, leasesKV); err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	wg.Go(func() { s.loop(ctx, nflogKV, hup) })
	close(s.ready)
	s.log.Info("alerting ready", "rules", len(s.engine.Config().Rules), "http", s.HTTPAddr())
	<-ctx.Done()
	return nil
}

// subscribe listens to heartbeats, transitions, events and posted alerts.
func (s *Service) subscribe(nc *nats.Conn) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	add := func(subject string, h nats.MsgHandler) error {
		sub, err := nc.Subscribe(subject, h)
		if err != nil {
			return fmt.Errorf("alerting: subscribe %s: %w", subject, err)
		}
		_ = sub.SetPendingLimits(1<<20, 256<<20)
		subs = append(subs, sub)
		return nil
	}
	errs := []error{
		add(streams.HeartbeatPrefix+">", func(m *nats.Msg) {
			hb, err := service.ParseHeartbeat(m.Subject, m.Header, m.Data)
			if err != nil {
				s.m.bad.WithLabelValues("heartbeat").Inc()
				return
			}
			s.signals.Heartbeat(hb.Service, hb.Instance, hb.Load, time.Now())
		}),
		add(streams.DetectorPrefix+">", func(m *nats.Msg) {
			var t membership.Transition
			if json.Unmarshal(m.Data, &t) != nil || t.Service == "" {
				s.m.bad.WithLabelValues("transition").Inc()
				return
			}
			s.signals.Transition(t, time.Now())
		}),
		add(streams.EventsPrefix+">", func(m *nats.Msg) {
			n := uint64(1)
			if c := m.Header.Get(streams.EnvelopeCountHeader); c != "" {
				if v, err := strconv.ParseUint(c, 10, 32); err == nil {
					n = v
				}
			}
			s.signals.Events(m.Subject[len(streams.EventsPrefix):], n, time.Now())
		}),
		add(streams.AlertsFanoutSubject, func(m *nats.Msg) {
			var as []PostableAlert
			if service.JSON.DecodeLenient(m.Data, &as) != nil || checkAlerts(as) != nil {
				s.m.bad.WithLabelValues("fanout").Inc()
				return
			}
			s.engine.Post(time.Now(), as...)
		}),
	}
	return subs, errors.Join(errs...)
}

// loop evaluates every evaluation interval, flushes due groups every
// flush interval, polls stream state, reloads on SIGHUP and, while
// active, removes silences past their retention.
func (s *Service) loop(ctx context.Context, nflog jetstream.KeyValue, hup <-chan os.Signal) {
	flush := time.NewTicker(s.opts.FlushInterval)
	defer flush.Stop()
	poll := time.NewTicker(s.opts.StreamPollInterval)
	defer poll.Stop()
	s.pollStreams(ctx)
	var ds deliveries
	defer ds.wait()
	var nextEval time.Time
	for {
		now := time.Now()
		if !now.Before(nextEval) {
			if s.opts.Gatherer != nil {
				if err := s.signals.GatherMetrics(s.opts.Gatherer, now); err != nil {
					s.log.Debug("gather metrics", "err", err)
				}
			}
			start := time.Now()
			s.engine.Evaluate(now)
			s.m.evalSeconds.Observe(time.Since(start).Seconds())
			nextEval = now.Add(s.engine.Config().EvaluationInterval.Std())
			if s.Active() {
				s.forward(ctx, now)
				s.gcSilences(ctx, now)
			}
		}
		for _, d := range s.engine.Flush(now) {
			ds.start(LogKey(d.Receiver, d.GroupKey), func() { s.deliver(ctx, nflog, d, now) })
		}
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = s.Reload()
		case <-poll.C:
			s.pollStreams(ctx)
		case <-flush.C:
		}
	}
}

func (s *Service) pollStreams(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.signals.PollStreams(pctx, s.js); err != nil {
		s.log.Debug("poll streams", "err", err)
	}
}

// loadSilence takes in the silence record stored under key. The key is
// what expiring and deleting a silence use, so a record whose id says
// otherwise (written by hand into the bucket) is loaded under its key: by
// its id it could never be expired. A record that does not decode, or
// whose matchers do not compile, is left out, with a warning.
func (s *Service) loadSilence(key string, value []byte) {
	var sl Silence
	if err := json.Unmarshal(value, &sl); err != nil {
		s.log.Warn("ignored a silence record that does not decode", "key", key, "err", err)
		return
	}
	if sl.ID != key {
		s.log.Warn("silence record's id differs from its key: loaded under its key", "key", key, "id", sl.ID)
		sl.ID = key
	}
	if err := s.silences.Set(sl); err != nil {
		s.log.Warn("ignored a silence record whose matchers do not compile", "key", key, "err", err)
	}
}

func (s *Service) gcSilences(ctx context.Context, now time.Time) {
	for _, id := range s.silences.Expired(now, s.opts.SilenceRetention) {
		if err := s.silKV.Delete(ctx, id); err != nil {
			s.log.Debug("remove expired silence", "id", id, "err", err)
			continue
		}
		s.silences.Delete(id)
	}
}

// setActive is called by the lease when this instance becomes active or
// standby; Active has already changed.
func (s *Service) setActive(held bool) {
	s.log.Info("alerting lease", "active", held)
}

func (s *Service) serveHTTP() (stop func(), err error) {
	l, err := net.Listen("tcp", s.opts.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("http %s is not available: %w", s.opts.HTTPAddr, err)
	}
	srv := &http.Server{Handler: s.API(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.serveWeb(l, srv); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("alerting http server failed", "err", err)
		}
	}()
	s.mu.Lock()
	s.httpAddr = l.Addr().String()
	s.mu.Unlock()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
