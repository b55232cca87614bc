package balancer

import (
	"cmp"
	"sync/atomic"
	"time"

	"github.com/platform/platform/streams"
)

// hedger decides when to send a second request: for idempotent
// subjects, after the first instance's own latency quantile, within a
// budget share of requests.
type hedger struct {
	opts   HedgeOptions
	hedged atomic.Uint64
}

func (h *hedger) init(o HedgeOptions) {
	o.Budget = cmp.Or(o.Budget, 0.05)
	o.Quantile = cmp.Or(o.Quantile, 0.99)
	h.opts = o
}

// delay returns how long to wait before hedging a request on subject
// sent to in, and false when it must not be hedged: the subject is not
// idempotent, or in answered too few requests yet to know its P99.
func (h *hedger) delay(subject string, in *instance) (time.Duration, bool) {
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
	// Twice the quantile: a request past its instance's own P99 is one in
	// a hundred by definition, and on a busy machine latency drifts
	// faster than the window follows, so ordinary tail latency alone
	// spent the whole budget (5% of requests hedged while no instance
	// was stalled), leaving none for a stall. Past twice its P99 a
	// request is late in a way the tail rarely is; against a stall of
	// hundreds of milliseconds the extra wait is a few milliseconds.
	d := 2 * in.recent.quantile(h.opts.Quantile)
	return d, d > 0
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
