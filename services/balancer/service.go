package balancer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/kvfollow"
	"github.com/platform/platform/lease"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// Service is one balancer instance: it computes weights from every
// heartbeat, stats poll and MEMBERS record; while it holds the lease it
// writes WEIGHTS and evens out leaders; and any instance forwards
// route.<subject> through its Router.
type Service struct {
	opts    Options
	log     *slog.Logger
	tab     *Table
	m       *metrics
	router  *Router
	svc     *service.Service
	elected *lease.Elected // the active balancer writes WEIGHTS
	poke    chan struct{}  // a MEMBERS change: tick now
	ready   chan struct{}

	// routeTimeout bounds a forwarded request from its arrival;
	// forwarding counts the forwards in flight, waited for by Run.
	routeTimeout time.Duration
	forwarding   sync.WaitGroup

	mu      sync.Mutex
	records []Record           // as of the last tick
	written map[string]written // what this instance last wrote, by key
	seed    maphash.Seed
}

type written struct {
	weight float64
	reason string
	sum    uint64    // hash of the record's JSON
	at     time.Time // when it was written
	due    time.Time // when it is rewritten though its weight stayed
}

// idleRefresh is how many refresh intervals a record whose JSON did not
// change at all waits before it is rewritten: an instance that stopped
// reporting keeps its record, at a sixth of the writes.
const idleRefresh = 6

// New checks the options and returns a balancer ready to Run.
func New(opts Options) (*Service, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	tab, err := NewTable(opts.Policy)
	if err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	s := &Service{
		opts: opts, log: opts.Logger.With("component", "balancer"), tab: tab,
		m: newMetrics(opts.Registerer), poke: make(chan struct{}, 1), ready: make(chan struct{}),
		written: map[string]written{}, seed: maphash.MakeSeed(), routeTimeout: cmp.Or(opts.Router.Timeout, 5*time.Second),
	}
	s.elected, err = lease.NewElected(lease.ElectedOptions{
		Key: lease.KeyBalancer, TTL: opts.LeaseTTL, Renew: opts.LeaseRenew,
		Gauge: s.m.active, OnChange: s.setActive, Logger: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	s.svc, err = service.New(service.Options{
		Conn:        opts.Conn,
		Name:        "balancer",
		Description: "Per-instance weights, latency-aware request routing and even RAFT leaders",
		Endpoints: []service.Endpoint{
			// Inline: handleRoute never blocks, it forwards on a goroutine
			// of its own, bounded per service by the router.
			{Name: "route", Subject: streams.RouteSubject(">"), Handler: s.handleRoute, OpaqueBody: true, Timeout: -1,
				Description: "Forwards route.<subject> to the best instance serving <subject> and relays its answer unchanged"},
			{Name: "status", Subject: streams.BalancerStatusSubject, Handler: service.Func(s.handleStatus), Concurrency: 2,
				Description: "Per instance: weight, inputs, share of routed requests"},
			{Name: "balance", Subject: streams.BalancerBalanceSubject, Handler: service.Func(s.handleBalance), Concurrency: 1,
				Timeout:     time.Minute,
				Description: "Evens out stream and consumer RAFT leaders across nodes now"},
		},
		HeartbeatInterval: opts.HeartbeatInterval,
		Logger:            opts.Logger,
		Registerer:        opts.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	return s, nil
}

// Ready is closed once the balancer serves.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Active reports whether this instance holds the lease and writes WEIGHTS.
func (s *Service) Active() bool { return s.elected.Active() }

// ID returns the instance id once running.
func (s *Service) ID() string { return s.svc.ID() }

// Router returns the router behind route.<subject>, once Ready.
func (s *Service) Router() *Router { return s.router }

// Run serves until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nc := s.opts.Conn
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("balancer: jetstream: %w", err)
	}
	kvs := map[string]jetstream.KeyValue{}
	for _, b := range []string{streams.BucketWeights, streams.BucketMembers, streams.BucketLeases} {
		if kvs[b], err = js.KeyValue(ctx, b); err != nil {
			return fmt.Errorf("balancer: open bucket %s: %w", b, err)
		}
	}
	ropts := s.opts.Router
	ropts.Conn, ropts.Weights = nc, kvs[streams.BucketWeights]
	if ropts.Logger == nil {
		ropts.Logger = s.opts.Logger
	}
	if s.router, err = NewRouter(ropts); err != nil {
		return fmt.Errorf("balancer: %w", err)
	}
	hb := streams.HeartbeatPrefix + ">"
	sub, err := nc.Subscribe(hb, s.onHeartbeat)
	if err != nil {
		return fmt.Errorf("balancer: subscribe %s: %w", hb, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	follower, err := kvfollow.Start(ctx, kvs[streams.BucketMembers], kvfollow.Options{Put: s.onMember, Logger: s.log})
	if err != nil {
		return fmt.Errorf("balancer: %w", err)
	}
	defer follower.Stop()
	if err := s.router.Start(ctx); err != nil {
		return fmt.Errorf("balancer: %w", err)
	}
	defer s.router.Stop()

	// Forwards end at their deadline or with ctx; waited for once the
	// route endpoint stopped taking requests.
	defer s.forwarding.Wait()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before wg.Wait
	if err := s.elected.Serve(ctx, &wg, s.svc); err != nil {
		return fmt.Errorf("balancer: %w", err)
	}
	s.log = s.log.With("id", s.svc.ID())
	if err := s.elected.Campaign(ctx, &wg, kvs[streams.BucketLeases]); err != nil {
		return fmt.Errorf("balancer: %w", err)
	}
	wg.Go(func() { s.tickLoop(ctx, kvs[streams.BucketWeights]) })
	wg.Go(func() { s.statsLoop(ctx) })
	if s.opts.Leaders != nil && s.opts.LeaderInterval > 0 {
		wg.Go(func() { s.leaderLoop(ctx) })
	}
	close(s.ready)
	s.log.Info("balancer ready")
	<-ctx.Done()
	return nil
}

// setActive is called by the lease when this instance becomes active or
// standby; Active has already changed.
func (s *Service) setActive(held bool) {
	if held {
		s.log.Info("balancer active: writing WEIGHTS")
		s.mu.Lock()
		s.written = map[string]written{} // rewrite everything once
		s.mu.Unlock()
		s.kick()
	} else {
		s.log.Info("balancer standby")
	}
}

func (s *Service) kick() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// onHeartbeat feeds a heartbeat to the table; bad ones are counted.
func (s *Service) onHeartbeat(m *nats.Msg) {
	hb, err := service.ParseHeartbeat(m.Subject, m.Header, m.Data)
	if err != nil {
		s.m.bad.WithLabelValues(service.HeartbeatReason(err)).Inc()
		return
	}
	s.tab.ObserveLoad(hb.Service, hb.Instance, hb.Load, time.Now())
	if hb.Load.Leaving {
		s.kick()
	}
}

// onMember feeds a MEMBERS record to the table and ticks at once when an
// instance turned suspect, dead or left, so its weight drops to 0
// without waiting. A refresh of a record already in that state waits for
// the next tick: ten thousand dead instances rewritten together would
// otherwise tick the whole table once per record.
func (s *Service) onMember(e jetstream.KeyValueEntry) {
	m, err := membership.Decode(e.Key(), e.Value())
	if err != nil {
		return
	}
	if s.tab.ObserveMember(m, time.Now()) && m.State != membership.Alive {
		s.kick()
	}
}

// tickLoop recomputes weights every TickInterval or when poked, and
// writes the changed ones while active.
func (s *Service) tickLoop(ctx context.Context, kv jetstream.KeyValue) {
	t := time.NewTicker(s.opts.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.poke:
		}
		recs, forgotten := s.tab.Tick(time.Now())
		s.mu.Lock()
		s.records = recs
		s.mu.Unlock()
		if s.Active() {
			s.write(ctx, kv, recs, forgotten)
		}
	}
}

// write puts every record whose weight or reason changed, then those
// due for a refresh, and deletes forgotten keys. A refresh keeps a
// record's inputs current; each record's next one is drawn within ±25%
// of RefreshInterval, so ten thousand instances first written together
// are not all rewritten in one tick ever after, and changed weights are
// never queued behind refreshes.
func (s *Service) write(ctx context.Context, kv jetstream.KeyValue, recs []Record, forgotten []string) {
	now := time.Now()
	var due []Record
	for _, r := range recs {
		s.mu.Lock()
		w, ok := s.written[r.Key()]
		s.mu.Unlock()
		switch {
		case !ok || math.Abs(w.weight-r.Weight) >= 1 || w.reason != r.Reason:
			s.put(ctx, kv, r, w, now)
		case !now.Before(w.due):
			due = append(due, r)
		}
	}
	for _, r := range due {
		s.mu.Lock()
		w := s.written[r.Key()]
		s.mu.Unlock()
		s.put(ctx, kv, r, w, now)
	}
	for _, k := range forgotten {
		if err := kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.log.Debug("delete weight", "key", k, "err", err)
		}
		s.mu.Lock()
		delete(s.written, k)
		s.mu.Unlock()
	}
}

// put writes r, unless it is a refresh of a record whose JSON is what was
// last written less than idleRefresh intervals ago: that one only waits.
func (s *Service) put(ctx context.Context, kv jetstream.KeyValue, r Record, last written, now time.Time) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	interval := s.opts.RefreshInterval
	k, sum := r.Key(), maphash.Bytes(s.seed, b)
	if !last.at.IsZero() && last.sum == sum && now.Sub(last.at) < idleRefresh*interval {
		last.due = last.at.Add(idleRefresh*interval + rand.N(interval/2+1))
		s.mu.Lock()
		s.written[k] = last
		s.mu.Unlock()
		return
	}
	if _, err := kv.Put(ctx, k, b); err != nil {
		s.m.writeErrs.Inc()
		s.log.Debug("write weight", "key", k, "err", err)
		return
	}
	s.m.writes.Inc()
	s.mu.Lock()
	s.written[k] = written{weight: r.Weight, reason: r.Reason, sum: sum, at: now, due: now.Add(interval*3/4 + rand.N(interval/2+1))}
	s.mu.Unlock()
}

// statsLoop polls $SRV.STATS every StatsInterval.
func (s *Service) statsLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := pollStats(ctx, s.opts.Conn, time.Second)
		if err != nil && ctx.Err() == nil {
			s.log.Debug("poll stats", "err", err)
		}
		now := time.Now()
		for _, x := range st {
			s.tab.ObserveStats(x.service, x.instance, x.requests, x.errors, x.processing, now)
		}
	}
}

// leaderLoop evens out leaders every LeaderInterval while active.
func (s *Service) leaderLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.LeaderInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.Active() {
			continue
		}
		counts, err := s.opts.Leaders.Counts(s.opts.Conn)
		if err != nil || Skew(counts) <= 1 {
			continue
		}
		rep, err := s.opts.Leaders.Balance(ctx, s.opts.Conn, s.log)
		s.m.leaderMoves.Add(float64(rep.Moved))
		if err != nil {
			s.log.Warn("balance leaders", "err", err)
			continue
		}
		s.log.Info("balanced leaders", "before", rep.Before, "after", rep.After, "moved", rep.Moved)
	}
}
