package balancer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/streams"
)

// maxAttempts bounds the instances tried for one request: another is
// tried only when the chosen one is gone ("no responders"), which means
// the request never reached it.
const maxAttempts = 3

// RequestMsg sends m to the best instance serving m.Subject and returns
// its answer as is. With fewer than two healthy instances known it sends
// to the queue group instead. It returns ErrUnknownSubject,
// ErrNoInstance or ErrTimeout (wrapped) when no answer comes; a failure
// on the chosen instance is an *InstanceError naming it.
func (r *Router) RequestMsg(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opts.Timeout)
		defer cancel()
	}
	r.requests.Add(1)
	all := r.candidates(m.Subject)
	var exclude []*instance
	for range maxAttempts {
		healthy := make([]*instance, 0, len(all))
		for _, in := range all {
			if in.w() > 0 && !slices.Contains(exclude, in) {
				healthy = append(healthy, in)
			}
		}
		if r.opts.Strategy == QueueGroup || len(healthy) < 2 {
			return r.viaQueue(ctx, m, len(all) > 0)
		}
		in := r.pick(healthy)
		resp, err := r.send(ctx, in, m, healthy)
		if errors.Is(err, nats.ErrNoResponders) {
			r.drop(in)
			exclude = append(exclude, in)
			continue
		}
		return resp, err
	}
	return nil, fmt.Errorf("request %s: %w", m.Subject, ErrNoInstance)
}

// viaQueue sends m to its own subject, where NATS picks a queue member.
func (r *Router) viaQueue(ctx context.Context, m *nats.Msg, known bool) (*nats.Msg, error) {
	resp, err := r.opts.Conn.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders) && known:
		return nil, fmt.Errorf("request %s: %w", m.Subject, ErrNoInstance)
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("request %s: %w", m.Subject, ErrUnknownSubject)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return nil, fmt.Errorf("request %s: %w", m.Subject, ErrTimeout)
	case err != nil:
		return nil, fmt.Errorf("request %s: %w", m.Subject, err)
	}
	return resp, nil
}

// pick chooses among at least two healthy instances by the strategy.
func (r *Router) pick(c []*instance) *instance {
	switch r.opts.Strategy {
	case RoundRobin:
		return c[r.rr.Add(1)%uint64(len(c))]
	case Weighted:
		return c[weightedIndex(c, -1)]
	}
	i := weightedIndex(c, -1)
	j := weightedIndex(c, i)
	now := time.Now()
	if c[j].cost(now) < c[i].cost(now) {
		return c[j]
	}
	return c[i]
}

// weightedIndex picks an index of c in proportion to weight, never skip.
func weightedIndex(c []*instance, skip int) int {
	var total float64
	for i, in := range c {
		if i != skip {
			total += in.w()
		}
	}
	x := rand.Float64() * total
	last := 0
	for i, in := range c {
		if i == skip {
			continue
		}
		last = i
		if x -= in.w(); x < 0 {
			return i
		}
	}
	return last
}

// send sends m to instance in, and, for an idempotent subject that is slow
// to answer, once more to another of others.
func (r *Router) send(ctx context.Context, in *instance, m *nats.Msg, others []*instance) (*nats.Msg, error) {
	delay, hedge := r.hedge.delay(m.Subject)
	if !hedge {
		resp, err := r.sendOne(ctx, in, m)
		return resp, wrapSendErr(m.Subject, in, err)
	}
	type result struct {
		resp *nats.Msg
		err  error
		in   *instance
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, 2)
	launch := func(in *instance) {
		go func() {
			resp, err := r.sendOne(ctx, in, m)
			results <- result{resp, err, in}
		}()
	}
	launch(in)
	t := time.NewTimer(delay)
	defer t.Stop()
	pending := 1
	for {
		select {
		case <-t.C:
			if second := r.second(in, others); second != nil && r.hedge.take(r.requests.Load()) {
				launch(second)
				pending++
			}
		case res := <-results:
			pending--
			if res.err == nil || pending == 0 {
				return res.resp, wrapSendErr(m.Subject, res.in, res.err)
			}
		}
	}
}

// second returns the cheapest instance of others other than first.
func (r *Router) second(first *instance, others []*instance) *instance {
	now := time.Now()
	var best *instance
	for _, o := range others {
		if o != first && (best == nil || o.cost(now) < best.cost(now)) {
			best = o
		}
	}
	return best
}

// sendOne sends m to in's instance subject and records the latency.
func (r *Router) sendOne(ctx context.Context, in *instance, m *nats.Msg) (*nats.Msg, error) {
	out := &nats.Msg{
		Subject: streams.InstanceSubject(in.service, in.id, m.Subject),
		Header:  m.Header,
		Data:    m.Data,
	}
	in.inFlight.Add(1)
	in.routed.Add(1)
	start := time.Now()
	resp, err := r.opts.Conn.RequestMsgWithContext(ctx, out)
	now := time.Now()
	in.inFlight.Add(-1)
	switch {
	case err == nil:
		d := now.Sub(start)
		in.lat.observe(d, now)
		r.hedge.observe(m.Subject, d)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		// No answer in time costs the instance what the caller waited.
		in.lat.observe(now.Sub(start), now)
	}
	return resp, err
}

// InstanceError is a request that failed on the instance it was sent to.
type InstanceError struct {
	// Subject is the request's subject.
	Subject string
	// Service and Instance name the instance.
	Service, Instance string
	// Err is why: ErrTimeout when it did not answer in time.
	Err error
}

func (e *InstanceError) Error() string {
	return fmt.Sprintf("request %s to instance %s: %v", e.Subject, streams.MemberKey(e.Service, e.Instance), e.Err)
}

// Unwrap returns the cause.
func (e *InstanceError) Unwrap() error { return e.Err }

func wrapSendErr(subject string, in *instance, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrNoResponders):
		return err // the caller tries another instance
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		err = ErrTimeout
	}
	return &InstanceError{Subject: subject, Service: in.service, Instance: in.id, Err: err}
}

// hedger decides when to send a second request: for idempotent subjects,
// after the observed latency quantile, within a budget share of requests.
type hedger struct {
	opts   HedgeOptions
	hedged atomic.Uint64

	mu      sync.Mutex
	samples []time.Duration // ring of recent latencies
	next    int
	cached  time.Duration
	since   int // observations since cached was computed
}

const hedgeSamples = 1024

func (h *hedger) init(o HedgeOptions) {
	o.Budget = cmp.Or(o.Budget, 0.05)
	o.Quantile = cmp.Or(o.Quantile, 0.95)
	h.opts = o
}

// delay returns how long to wait before hedging a request on subject, and
// false when it must not be hedged.
func (h *hedger) delay(subject string) (time.Duration, bool) {
	if len(h.opts.Idempotent) == 0 {
		return 0, false
	}
	idem := false
	for _, f := range h.opts.Idempotent {
		if streams.SubjectMatches(f, subject) {
			idem = true
			break
		}
	}
	if !idem {
		return 0, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) < 100 {
		return 0, false // no quantile to go by yet
	}
	if h.cached == 0 || h.since >= 100 {
		s := slices.Clone(h.samples)
		slices.Sort(s)
		h.cached = s[int(h.opts.Quantile*float64(len(s)-1))]
		h.since = 0
	}
	return h.cached, true
}

func (h *hedger) observe(subject string, d time.Duration) {
	if len(h.opts.Idempotent) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) < hedgeSamples {
		h.samples = append(h.samples, d)
	} else {
		h.samples[h.next] = d
		h.next = (h.next + 1) % hedgeSamples
	}
	h.since++
}

// Hedged returns how many requests the router sent a second time.
func (r *Router) Hedged() uint64 { return r.hedge.hedged.Load() }

// take spends one hedge if the budget allows it, given total requests.
func (h *hedger) take(total uint64) bool {
	for {
		n := h.hedged.Load()
		if float64(n+1) > h.opts.Budget*float64(total) {
			return false
		}
		if h.hedged.CompareAndSwap(n, n+1) {
			return true
		}
	}
}
