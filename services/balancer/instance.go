package balancer

import (
	"container/list"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/platform/platform/streams"
)

// instance is one instance the router may send to.
type instance struct {
	service, id string
	filters     []string
	lat         *latencyEWMA
	recent      recentLatency
	load        *serviceLoad // its service's requests in flight
	inFlight    atomic.Int64
	routed      atomic.Uint64
	weight      atomic.Uint64 // float64 bits
	missed      int           // discoveries without it; owned by refresh

	// pending holds the start times of its requests awaiting an answer,
	// oldest first (answers come back nearly in order, so removal is
	// near the front).
	pmu     sync.Mutex
	pending list.List
}

func (in *instance) key() string { return streams.MemberKey(in.service, in.id) }

func (in *instance) w() float64 { return math.Float64frombits(in.weight.Load()) }

// reserve counts a request about to be sent to it, unless it has limit
// in flight already.
func (in *instance) reserve(limit int) bool {
	if in.inFlight.Add(1) > int64(limit) {
		in.inFlight.Add(-1)
		return false
	}
	return true
}

// begin notes that a reserved request was sent to it at start; end it
// when its answer (or its caller's deadline) came.
func (in *instance) begin(start time.Time) *list.Element {
	in.routed.Add(1)
	in.pmu.Lock()
	e := in.pending.PushBack(start.UnixNano())
	in.pmu.Unlock()
	return e
}

func (in *instance) end(e *list.Element) {
	in.pmu.Lock()
	in.pending.Remove(e)
	in.pmu.Unlock()
	in.inFlight.Add(-1)
}

// oldest returns the age of its oldest request awaiting an answer, 0
// with none.
func (in *instance) oldest(now time.Time) time.Duration {
	in.pmu.Lock()
	defer in.pmu.Unlock()
	if f := in.pending.Front(); f != nil {
		return max(now.Sub(time.Unix(0, f.Value.(int64))), 0)
	}
	return 0
}

// latency is the router's latency figure of it: the EWMA of its answers,
// or the age of its oldest request still unanswered if that is larger.
// The age is what Finagle's Peak-EWMA charges pending requests for: an
// instance that stopped answering grows more expensive with every
// millisecond instead of decaying toward zero and looking cheap.
func (in *instance) latency(now time.Time) float64 {
	return max(in.lat.value(now), float64(in.oldest(now)))
}

// expected is how long in is expected to take to answer a request sent
// now: its recent median, or its Peak-EWMA latency before it answered
// enough requests to have one, and never less than the age of its oldest
// unanswered request. Hedging asks this rather than latency: Peak-EWMA
// jumps to a single slow answer's latency (a GC pause, a loaded machine),
// which says little about the next answer.
func (in *instance) expected(now time.Time) float64 {
	typical := float64(in.recent.p50.Load())
	if typical == 0 {
		typical = in.lat.value(now)
	}
	return max(typical, float64(in.oldest(now)))
}

// cost is the P2C cost: latency × (in-flight+1) ÷ weight share. An
// instance never measured but busy gets a large penalty (Finagle), so a
// new one is not flooded before its first answer.
func (in *instance) cost(now time.Time) float64 {
	lat := in.latency(now)
	n := float64(in.inFlight.Load())
	if lat == 0 && n > 0 {
		return math.MaxFloat64/4 + n
	}
	return lat * (n + 1) / (in.w() / 100)
}

// serviceLoad counts one service's requests in flight through a router.
type serviceLoad struct{ inFlight atomic.Int64 }

// recentLatency keeps an instance's last answers' latencies and their
// P50, P95 and P99, recomputed every recomputeEvery answers.
type recentLatency struct {
	mu            sync.Mutex
	samples       []time.Duration
	next          int
	since         int
	p50, p95, p99 atomic.Int64 // nanoseconds; 0 until minSamples answers
}

const (
	recentSamples  = 256
	recomputeEvery = 32
	minSamples     = 32
)

func (r *recentLatency) observe(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < recentSamples {
		r.samples = append(r.samples, d)
	} else {
		r.samples[r.next] = d
		r.next = (r.next + 1) % recentSamples
	}
	if r.since++; r.since < recomputeEvery || len(r.samples) < minSamples {
		return
	}
	r.since = 0
	s := slices.Clone(r.samples)
	slices.Sort(s)
	r.p50.Store(int64(s[(len(s)-1)/2]))
	r.p95.Store(int64(s[(len(s)-1)*95/100]))
	r.p99.Store(int64(s[(len(s)-1)*99/100]))
}

// quantile returns its recent P95 (q < 0.99) or P99, 0 when too few
// answers came yet.
func (r *recentLatency) quantile(q float64) time.Duration {
	if q < 0.99 {
		return time.Duration(r.p95.Load())
	}
	return time.Duration(r.p99.Load())
}
