package balancer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/kvfollow"
	"github.com/platform/platform/streams"
)

// Errors a Router returns; match them with errors.Is.
var (
	// ErrUnknownSubject: no instance is known to serve the subject and
	// nothing answered it in the queue group either.
	ErrUnknownSubject = errors.New("no service serves this subject")
	// ErrNoInstance: instances serve the subject, but none is healthy
	// or none answered.
	ErrNoInstance = errors.New("no healthy instance serves this subject")
	// ErrTimeout: the chosen instance did not answer in time.
	ErrTimeout = errors.New("instance did not answer in time")
	// ErrOverloaded: the subject's service, or every healthy instance of
	// it, has as many requests in flight through this router as its limit
	// allows (RouterOptions.MaxInFlight, MaxInFlightPerInstance).
	ErrOverloaded = errors.New("too many requests in flight to this service")
)

// Strategy is how a Router picks an instance.
type Strategy int

// Strategies. P2C is the router; the others are what it is measured
// against.
const (
	// P2C picks two instances at random in proportion to their WEIGHTS
	// weight and sends to the one with the lower EWMA latency ×
	// (in-flight+1) ÷ weight.
	P2C Strategy = iota
	// Weighted picks one instance at random in proportion to its WEIGHTS
	// weight alone: the reference document's dynamic weights.
	Weighted
	// RoundRobin cycles through the healthy instances.
	RoundRobin
	// QueueGroup sends to the endpoint's own subject and lets NATS pick a
	// queue member uniformly at random.
	QueueGroup
)

var strategyNames = []string{"p2c", "weighted", "round_robin", "queue_group"}

func (s Strategy) String() string {
	if int(s) < len(strategyNames) {
		return strategyNames[s]
	}
	return fmt.Sprintf("strategy(%d)", int(s))
}

// RouterOptions configure a Router.
type RouterOptions struct {
	// Conn carries the requests. Required.
	Conn *nats.Conn
	// Weights is bucket WEIGHTS, followed for each instance's weight: the
	// prior of the choice, and its health gate (weight 0: never chosen).
	// Nil: every instance weighs 100.
	Weights kvfollow.KV
	// Strategy picks instances (default P2C).
	Strategy Strategy
	// Timeout bounds a request whose context has no deadline (5s).
	Timeout time.Duration
	// Decay is the time constant of the latency estimate (default 1s).
	// An instance nobody chooses is probed about every Decay × ln(its
	// latency ÷ its peers' cost), and one that recovered takes a few
	// Decays to win its share back: with 2s that was 5-8 s, at the edge
	// of the 10 s target; 1s still keeps a 10x slower instance at 0.1%.
	Decay time.Duration
	// Peak makes the latency estimate Finagle's Peak-EWMA, which jumps to
	// any slower answer at once. Off by default: on a loaded machine
	// every instance has the odd answer delayed by the scheduler, and the
	// peak then makes healthy instances look as slow as a slow one.
	Peak bool
	// Discovery is how often instances are looked up with $SRV.INFO
	// (default 2s); an instance that answers "no responders" is dropped
	// at once.
	Discovery time.Duration
	// DiscoveryWait bounds one lookup (default 500ms).
	DiscoveryWait time.Duration
	// Hedge sends a second request to another instance when the first
	// has not answered after twice its own recent P99 and the other is
	// expected to answer sooner, for subjects matching Hedge.Idempotent
	// only.
	Hedge HedgeOptions
	// MaxInFlight bounds the requests in flight through the router to one
	// service (default 1024); past it a request fails at once with
	// ErrOverloaded, so a stuck service holds up only its own callers.
	MaxInFlight int
	// MaxInFlightPerInstance bounds the requests in flight to one
	// instance (default 256); a full instance is not chosen.
	MaxInFlightPerInstance int
	// Logger receives the router's logs (default slog.Default()).
	Logger *slog.Logger
}

// HedgeOptions configure hedged requests.
type HedgeOptions struct {
	// Idempotent lists the subject filters whose requests may be sent
	// twice (none: no hedging).
	Idempotent []string
	// Budget is the largest share of requests that may be hedged
	// (default 0.05).
	Budget float64
	// Quantile of the first instance's own recent latencies twice which
	// a request waits before it is hedged: 0.95 or 0.99 (default). At
	// P95 ordinary tail latency spends the whole 5% budget; at twice the
	// P99 most of it is left for instances that stall.
	Quantile float64
}

// Router sends requests to the best instance serving their subject. It is
// safe for concurrent use.
type Router struct {
	opts RouterOptions
	log  *slog.Logger

	mu       sync.RWMutex
	insts    map[string]*instance    // by key
	weights  map[string]float64      // WEIGHTS as followed, by key
	loads    map[string]*serviceLoad // by service
	served   []servedSubject         // every discovered endpoint subject
	bySubj   map[string]route
	rr       atomic.Uint64
	hedge    hedger
	requests atomic.Uint64

	// forward's requests awaiting an answer on the reply subscription
	fmu     sync.Mutex
	inbox   string // "<inbox>.", "" when not forwarding
	fsub    *nats.Subscription
	ftok    uint64
	pending map[string]*forwarded

	cancel   context.CancelFunc
	done     chan struct{}
	follower *kvfollow.Follower
}

// NewRouter checks the options and returns a router; call Start.
func NewRouter(opts RouterOptions) (*Router, error) {
	if opts.Conn == nil {
		return nil, errors.New("router: nil NATS connection")
	}
	if opts.Strategy < P2C || opts.Strategy > QueueGroup {
		return nil, fmt.Errorf("router: unknown strategy %d", opts.Strategy)
	}
	opts.Timeout = cmp.Or(opts.Timeout, 5*time.Second)
	opts.Decay = cmp.Or(opts.Decay, time.Second)
	opts.Discovery = cmp.Or(opts.Discovery, 2*time.Second)
	opts.DiscoveryWait = cmp.Or(opts.DiscoveryWait, 500*time.Millisecond)
	opts.MaxInFlight = cmp.Or(opts.MaxInFlight, 1024)
	opts.MaxInFlightPerInstance = cmp.Or(opts.MaxInFlightPerInstance, 256)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Router{
		opts:    opts,
		log:     opts.Logger.With("component", "router"),
		insts:   map[string]*instance{},
		weights: map[string]float64{},
		loads:   map[string]*serviceLoad{},
		bySubj:  map[string]route{},
		pending: map[string]*forwarded{},
		done:    make(chan struct{}),
	}
	r.hedge.init(opts.Hedge)
	return r, nil
}

// Start looks the instances up once, follows WEIGHTS, and keeps looking
// instances up until Stop or ctx ends.
func (r *Router) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	if r.opts.Weights != nil {
		f, err := kvfollow.Start(ctx, r.opts.Weights, kvfollow.Options{Put: r.putWeight, Delete: r.delWeight, Logger: r.log})
		if err != nil {
			cancel()
			return fmt.Errorf("router: %w", err)
		}
		r.follower = f
		select {
		case <-f.Synced():
		case <-ctx.Done():
		case <-time.After(r.opts.DiscoveryWait):
		}
	}
	if err := r.startForwarding(); err != nil {
		cancel()
		if r.follower != nil {
			r.follower.Stop()
		}
		return fmt.Errorf("router: %w", err)
	}
	if err := r.Refresh(ctx); err != nil {
		r.log.Warn("discover instances", "err", err)
	}
	go func() {
		defer close(r.done)
		defer r.stopForwarding()
		t := time.NewTicker(r.opts.Discovery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
					r.log.Debug("discover instances", "err", err)
				}
			}
		}
	}()
	return nil
}

// Stop ends discovery and the WEIGHTS follower.
func (r *Router) Stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	if r.follower != nil {
		r.follower.Stop()
	}
}

// servedSubject is an endpoint subject some discovered service serves.
type servedSubject struct {
	filter string
	load   *serviceLoad
	seen   time.Time // last discovered
}

// servedFor is how long a served subject is remembered after its last
// discovery: under load, answers to $SRV.INFO come late and a lookup or
// two can miss a service that is there.
func (r *Router) servedFor() time.Duration { return max(5*r.opts.Discovery, 10*time.Second) }

// route is what the router knows of one subject: the instances that
// answer it on their own subjects, and the in-flight count of the service
// that serves it (nil: no discovered service does).
type route struct {
	insts []*instance
	load  *serviceLoad
}

// Refresh looks the instances up now.
func (r *Router) Refresh(ctx context.Context) error {
	eps, err := discover(ctx, r.opts.Conn, r.opts.DiscoveryWait)
	if err != nil {
		return err
	}
	found := map[string][]string{}
	names := map[string][2]string{}
	var served []servedSubject
	seen := map[[2]string]bool{} // service, subject
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	loadOf := func(svc string) *serviceLoad {
		l := r.loads[svc]
		if l == nil {
			l = &serviceLoad{}
			r.loads[svc] = l
		}
		return l
	}
	for _, e := range eps {
		if !e.instanced {
			if k := [2]string{e.service, e.filter}; !seen[k] {
				seen[k] = true
				served = append(served, servedSubject{filter: e.filter, load: loadOf(e.service), seen: now})
			}
			continue
		}
		k := streams.MemberKey(e.service, e.instance)
		found[k] = append(found[k], e.filter)
		names[k] = [2]string{e.service, e.instance}
	}
	for k, in := range r.insts {
		if _, ok := found[k]; !ok {
			// One lookup can miss an answer; two in a row mean it is gone.
			if in.missed++; in.missed >= 2 {
				delete(r.insts, k)
			}
		}
	}
	for k, filters := range found {
		in := r.insts[k]
		if in == nil {
			in = &instance{service: names[k][0], id: names[k][1], lat: newLatencyEWMA(r.opts.Decay, r.opts.Peak), load: loadOf(names[k][0])}
			in.weight.Store(math.Float64bits(r.weightOf(k)))
			r.insts[k] = in
		}
		in.filters, in.missed = filters, 0
	}
	// Keep what missed answers left out, for a while.
	for _, old := range r.served {
		dup := slices.ContainsFunc(served, func(s servedSubject) bool { return s.filter == old.filter && s.load == old.load })
		if !dup && now.Sub(old.seen) < r.servedFor() {
			served = append(served, old)
		}
	}
	r.served = served
	r.bySubj = map[string]route{}
	return nil
}

func (r *Router) weightOf(key string) float64 {
	if w, ok := r.weights[key]; ok {
		return w
	}
	return 100
}

func (r *Router) putWeight(e jetstream.KeyValueEntry) {
	rec, err := DecodeRecord(e.Key(), e.Value())
	if err != nil {
		return
	}
	r.setWeight(e.Key(), rec.Weight)
}

func (r *Router) delWeight(e jetstream.KeyValueEntry) { r.setWeight(e.Key(), 100) }

func (r *Router) setWeight(key string, w float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.weights[key] = w
	if in := r.insts[key]; in != nil {
		in.weight.Store(math.Float64bits(w))
	}
}

// lookup returns what the router knows of subject.
func (r *Router) lookup(subject string) route {
	r.mu.RLock()
	c, ok := r.bySubj[subject]
	r.mu.RUnlock()
	if ok {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c = route{}
	for _, in := range r.insts {
		for _, f := range in.filters {
			if streams.SubjectMatches(f, subject) {
				c.insts = append(c.insts, in)
				c.load = in.load
				break
			}
		}
	}
	if c.load == nil {
		for _, s := range r.served {
			if streams.SubjectMatches(s.filter, subject) {
				c.load = s.load
				break
			}
		}
	}
	if len(r.bySubj) < 10000 {
		r.bySubj[subject] = c
	}
	return c
}

// Serves reports whether a micro service the router discovered serves
// subject on one of its endpoints.
func (r *Router) Serves(subject string) bool { return r.lookup(subject).load != nil }

// drop forgets an instance that answered "no responders".
func (r *Router) drop(in *instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.insts[in.key()] == in {
		delete(r.insts, in.key())
		r.bySubj = map[string]route{}
	}
}

// Request sends data to subject through the best instance.
func (r *Router) Request(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	return r.RequestMsg(ctx, &nats.Msg{Subject: subject, Data: data})
}

// InstanceStats is what a Router knows of one instance.
type InstanceStats struct {
	// Service and Instance name it.
	Service, Instance string
	// Routed is how many requests the router sent it.
	Routed uint64
	// InFlight is how many of them await an answer.
	InFlight int64
	// LatencyMS is the router's latency estimate of it now: its EWMA, or
	// the age of its oldest unanswered request if larger.
	LatencyMS float64
	// P99MS is its recent answers' P99 (0 until enough came).
	P99MS float64
	// Weight is its WEIGHTS weight as the router sees it.
	Weight float64
}

// Key returns the instance's WEIGHTS key.
func (s InstanceStats) Key() string { return streams.MemberKey(s.Service, s.Instance) }

// Instances returns every instance the router knows, by key.
func (r *Router) Instances() map[string]InstanceStats {
	now := time.Now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]InstanceStats, len(r.insts))
	for k, in := range r.insts {
		out[k] = InstanceStats{
			Service: in.service, Instance: in.id, Routed: in.routed.Load(), InFlight: in.inFlight.Load(),
			LatencyMS: in.latency(now) / 1e6, Weight: in.w(),
			P99MS: float64(in.recent.quantile(0.99)) / 1e6,
		}
	}
	return out
}
