package balancer

import (
	"math"
	"sync"
	"time"
)

// peakEWMA is Finagle's and Linkerd's latency estimate: it jumps to any
// latency above it at once and decays toward lower ones with time
// constant tau, so one slow answer makes an instance expensive right away
// and it earns its way back only with time. Reading it decays it too, so
// an instance nobody chooses becomes cheap again and gets probed.
type peakEWMA struct {
	tau float64 // nanoseconds

	mu    sync.Mutex
	cost  float64 // nanoseconds
	stamp time.Time
}

func newPeakEWMA(tau time.Duration) *peakEWMA {
	return &peakEWMA{tau: float64(tau)}
}

// observe folds in one latency seen at now.
func (p *peakEWMA) observe(rtt time.Duration, now time.Time) {
	p.mu.Lock()
	p.update(float64(rtt), now)
	p.mu.Unlock()
}

// value returns the estimate at now, in nanoseconds.
func (p *peakEWMA) value(now time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.update(0, now)
	return p.cost
}

func (p *peakEWMA) update(rtt float64, now time.Time) {
	td := max(float64(now.Sub(p.stamp)), 0)
	if p.stamp.IsZero() {
		td = 0
	}
	p.stamp = now
	if rtt > p.cost {
		p.cost = rtt
		return
	}
	w := math.Exp(-td / p.tau)
	p.cost = p.cost*w + rtt*(1-w)
}
