package balancer

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
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
// its answer as is. Only when the router knows no instance serving the
// subject on its own instance subject (a service that has none, or one
// not discovered yet) does it send to the subject, where NATS picks a
// queue member. It fails at once, without sending, with ErrNoInstance
// when instances are known but none is healthy, and with ErrOverloaded
// when the service has MaxInFlight requests in flight. It returns
// ErrUnknownSubject or ErrTimeout (wrapped) when no answer comes; a
// failure on the chosen instance is an *InstanceError naming it.
func (r *Router) RequestMsg(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	t, err := r.admit(m, false)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opts.Timeout)
		defer cancel()
	}
	return r.complete(ctx, t)
}

// ticket is a request the router admitted: counted against its service's
// limit, and its first instance chosen and counted against that one's.
type ticket struct {
	m       *nats.Msg
	load    *serviceLoad // nil: no discovered service serves the subject
	all     []*instance  // every instance serving it
	in      *instance    // nil: send to the queue group
	healthy []*instance  // those in was chosen from
}

// admit counts m against its service's limit and chooses its first
// instance, without blocking; the caller must complete the ticket. With
// served, a subject no discovered service serves is ErrUnknownSubject at
// once instead of being sent to whoever subscribes to it.
func (r *Router) admit(m *nats.Msg, served bool) (*ticket, error) {
	r.requests.Add(1)
	rt := r.lookup(m.Subject)
	if served && rt.load == nil {
		return nil, fmt.Errorf("request %s: %w", m.Subject, ErrUnknownSubject)
	}
	t := &ticket{m: m, all: rt.insts}
	if rt.load != nil {
		if rt.load.inFlight.Add(1) > int64(r.opts.MaxInFlight) {
			rt.load.inFlight.Add(-1)
			return nil, fmt.Errorf("request %s: %w", m.Subject, ErrOverloaded)
		}
		t.load = rt.load
	}
	if r.opts.Strategy == QueueGroup || len(rt.insts) == 0 {
		return t, nil
	}
	var err error
	if t.in, t.healthy, err = r.choose(rt.insts, nil); err != nil {
		t.release()
		return nil, fmt.Errorf("request %s: %w", m.Subject, err)
	}
	return t, nil
}

func (t *ticket) release() {
	if t.load != nil {
		t.load.inFlight.Add(-1)
	}
}

// complete sends an admitted request and waits for its answer until ctx
// ends. Another instance is tried only when the chosen one is gone.
func (r *Router) complete(ctx context.Context, t *ticket) (*nats.Msg, error) {
	defer t.release()
	if t.in == nil {
		return r.viaQueue(ctx, t.m, t.load != nil)
	}
	return r.attempt(ctx, t, t.in, t.healthy, nil)
}

// attempt sends t to in, and to other instances while the one sent to is
// gone, up to maxAttempts in all, the excluded ones counted.
func (r *Router) attempt(ctx context.Context, t *ticket, in *instance, healthy, exclude []*instance) (*nats.Msg, error) {
	for attempt := len(exclude) + 1; ; attempt++ {
		resp, err := r.send(ctx, in, t.m, healthy)
		if !errors.Is(err, nats.ErrNoResponders) {
			return resp, err
		}
		r.drop(in)
		exclude = append(exclude, in)
		if attempt == maxAttempts {
			return nil, fmt.Errorf("request %s: %w", t.m.Subject, ErrNoInstance)
		}
		if in, healthy, err = r.choose(t.all, exclude); err != nil {
			return nil, fmt.Errorf("request %s: %w", t.m.Subject, err)
		}
	}
}

// choose returns the instance of all to send to, counted in its
// in-flight requests, and the healthy ones it was chosen from. Healthy:
// weight above 0, not excluded, below its in-flight limit. One healthy
// instance is chosen alone, however slow: it is the only one that can
// answer. Among several, one whose oldest unanswered request is older
// than every other's recent P99 is stalled and left out; the strategy
// picks among the rest.
func (r *Router) choose(all, exclude []*instance) (*instance, []*instance, error) {
	healthy := make([]*instance, 0, len(all))
	full := false
	for _, in := range all {
		switch {
		case in.w() <= 0 || slices.Contains(exclude, in):
		case in.inFlight.Load() >= int64(r.opts.MaxInFlightPerInstance):
			full = true
		default:
			healthy = append(healthy, in)
		}
	}
	var in *instance
	switch {
	case len(healthy) == 0 && full:
		return nil, nil, ErrOverloaded
	case len(healthy) == 0:
		return nil, nil, ErrNoInstance
	case len(healthy) == 1:
		in = healthy[0]
	default:
		if c := unstalled(healthy, time.Now()); len(c) == 1 {
			in = c[0]
		} else {
			in = r.pick(c)
		}
	}
	if !in.reserve(r.opts.MaxInFlightPerInstance) {
		return nil, nil, ErrOverloaded // filled up since it was looked at
	}
	return in, healthy, nil
}

// minStall is the least age of an unanswered request that marks its
// instance stalled, so instances answering in microseconds are not
// left out for a scheduler's hiccup.
const minStall = time.Millisecond

// unstalled returns the instances of c whose oldest unanswered request
// is no older than the largest recent P99 among the others; all of c when
// that would leave none.
func unstalled(c []*instance, now time.Time) []*instance {
	var agesBuf, p99sBuf [8]time.Duration
	ages, p99s := agesBuf[:0], p99sBuf[:0]
	if len(c) > len(agesBuf) {
		ages, p99s = make([]time.Duration, 0, len(c)), make([]time.Duration, 0, len(c))
	}
	ages, p99s = ages[:len(c)], p99s[:len(c)]
	for i, in := range c {
		ages[i], p99s[i] = in.oldest(now), in.recent.quantile(0.99)
	}
	var out []*instance
	for i, in := range c {
		var others time.Duration
		for j, p := range p99s {
			if j != i {
				others = max(others, p)
			}
		}
		if others > 0 && ages[i] > max(others, minStall) {
			if out == nil {
				out = append(make([]*instance, 0, len(c)), c[:i]...)
			}
			continue
		}
		if out != nil {
			out = append(out, in)
		}
	}
	if out == nil {
		return c // none stalled: no copy
	}
	if len(out) == 0 {
		return c
	}
	return out
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

// send sends m to instance in, and, for an idempotent subject, once more
// to the cheapest other of others when in has not answered after twice its
// own recent P99 (HedgeOptions.Quantile) and that other is expected to answer
// sooner than in already took.
//
// The copy that loses is not cancelled: it stays outstanding on its
// instance, counted in its in-flight requests and its oldest request's
// age, until its answer or the request's deadline, for it really is
// outstanding there. Cancelling it made a paused instance look idle the
// moment a hedge won, so it was chosen again and every request sent to it
// was hedged: most of the budget went on re-rescuing requests the router
// should not have sent there.
func (r *Router) send(ctx context.Context, in *instance, m *nats.Msg, others []*instance) (*nats.Msg, error) {
	delay, hedge := r.hedge.delay(m.Subject, in)
	if !hedge || len(others) < 2 {
		resp, err := r.sendOne(ctx, in, m, nil)
		return resp, wrapSendErr(m.Subject, in, err)
	}
	type result struct {
		resp *nats.Msg
		err  error
		in   *instance
	}
	// Both copies run until their answer or the caller's deadline, not
	// the caller's return.
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(r.opts.Timeout)
	}
	results := make(chan result, 2) // never blocks a copy that lost
	var won atomic.Bool
	launch := func(in *instance) {
		go func() {
			cctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
			defer cancel()
			resp, err := r.sendOne(cctx, in, m, &won)
			results <- result{resp, err, in}
		}()
	}
	start := time.Now()
	launch(in)
	t := time.NewTimer(delay)
	defer t.Stop()
	pending := 1
	for {
		select {
		case <-t.C:
			// Unless another instance is expected to answer sooner
			// than this one already took, look again a quarter delay
			// later.
			now := time.Now()
			second := r.second(in, others, now)
			if second != nil && second.expected(now) < float64(now.Sub(start)) &&
				r.hedge.take(r.requests.Load()) && second.reserve(r.opts.MaxInFlightPerInstance) {
				launch(second)
				pending++
				break
			}
			t.Reset(max(delay/4, 100*time.Microsecond))
		case res := <-results:
			pending--
			if res.err == nil || pending == 0 {
				return res.resp, wrapSendErr(m.Subject, res.in, res.err)
			}
		case <-ctx.Done():
			return nil, wrapSendErr(m.Subject, in, ctx.Err())
		}
	}
}

// second returns the cheapest instance of others other than first.
func (r *Router) second(first *instance, others []*instance, now time.Time) *instance {
	var best *instance
	var bestCost float64
	for _, o := range others {
		if o == first {
			continue
		}
		if c := o.cost(now); best == nil || c < bestCost {
			best, bestCost = o, c
		}
	}
	return best
}

// sendOne sends m to in's instance subject, reserved by the caller, and
// records the latency. With won set, it is one of a hedged request's two
// copies: only the first answered (the one that swaps won) counts in the
// recent quantiles the hedge delay comes from. An answer that lost comes
// from an instance that stalled, and recorded there it would raise that
// instance's P99, and so its next hedge delay, to the length of the stall.
func (r *Router) sendOne(ctx context.Context, in *instance, m *nats.Msg, won *atomic.Bool) (*nats.Msg, error) {
	out := &nats.Msg{
		Subject: streams.InstanceSubject(in.service, in.id, m.Subject),
		Header:  m.Header,
		Data:    m.Data,
	}
	start := time.Now()
	e := in.begin(start)
	resp, err := r.opts.Conn.RequestMsgWithContext(ctx, out)
	lost := err == nil && won != nil && !won.CompareAndSwap(false, true)
	in.answered(e, start, time.Now(), err, lost)
	return resp, err
}

// answered ends request e sent to in at start, answered at now (err nil)
// or not, and records what it says of in's latency; an answer that lost
// to a hedge counts in the EWMA alone.
func (in *instance) answered(e *list.Element, start, now time.Time, err error, lost bool) {
	in.end(e)
	d := now.Sub(start)
	switch {
	case err == nil:
		in.lat.observe(d, now)
		if !lost {
			in.recent.observe(d)
		}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.Canceled):
		// No answer in time costs the instance what the caller waited;
		// so does a hedge it lost, which it would have taken longer.
		in.lat.observe(d, now)
	}
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
