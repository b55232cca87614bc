package balancer

import (
	"math"
	"sync"
	"time"
)

// latencyEWMA is the router's latency estimate of one instance: an
// exponentially weighted moving average over time (Finagle's and
// Linkerd's, after Eckner's irregular time series), each answer weighing
// in by the time since the previous one, so the estimate moves with time
// constant tau however many answers come. Between answers it decays
// toward zero, so an instance nobody chooses becomes cheap again and is
// probed, and a probe after a long wait sets the estimate almost alone.
//
// With peak set it is Finagle's Peak-EWMA: an answer slower than the
// estimate replaces it at once. That reacts to a slow instance on its
// first slow answer, but on a busy machine every instance has the odd
// answer delayed tens of milliseconds by the scheduler, and each such
// answer makes a healthy instance look as slow as a really slow one for
// seconds. Without the peak, a healthy instance's rare late answers
// barely move its estimate, and the router's other term, requests in
// flight, reacts to a slow instance at once instead: its answers stop
// coming back while its peers' do.
type latencyEWMA struct {
	tau  float64 // nanoseconds
	peak bool

	mu    sync.Mutex
	est   float64 // nanoseconds, as of stamp
	stamp time.Time
}

func newLatencyEWMA(tau time.Duration, peak bool) *latencyEWMA {
	return &latencyEWMA{tau: float64(tau), peak: peak}
}

// observe folds in one latency seen at now.
func (e *latencyEWMA) observe(rtt time.Duration, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := float64(rtt)
	switch {
	case e.stamp.IsZero(), e.peak && x > e.decayed(now):
		e.est = x
	default:
		w := e.weight(now)
		e.est = e.est*w + x*(1-w)
	}
	e.stamp = now
}

// value returns the estimate at now, in nanoseconds.
func (e *latencyEWMA) value(now time.Time) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.decayed(now)
}

// decayed is the estimate decayed toward zero from stamp to now.
func (e *latencyEWMA) decayed(now time.Time) float64 {
	if e.stamp.IsZero() {
		return 0
	}
	return e.est * e.weight(now)
}

// weight is the share the estimate as of stamp keeps at now.
func (e *latencyEWMA) weight(now time.Time) float64 {
	return math.Exp(-max(float64(now.Sub(e.stamp)), 0) / e.tau)
}
