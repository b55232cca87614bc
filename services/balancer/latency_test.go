package balancer

import (
	"math"
	"testing"
	"time"
)

// TestLatencyEWMA drives the estimate with answers at known times.
func TestLatencyEWMA(t *testing.T) {
	const tau = 2 * time.Second
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	t0 := time.Unix(1000, 0)
	// steady feeds one answer of lat every 2 ms for d, from t0.
	steady := func(e *latencyEWMA, from time.Time, d time.Duration, lat time.Duration) time.Time {
		now := from
		for end := from.Add(d); now.Before(end); now = now.Add(2 * time.Millisecond) {
			e.observe(lat, now)
		}
		return now
	}
	tests := []struct {
		name     string
		peak     bool
		run      func(e *latencyEWMA) (got float64)
		lo, hi   float64 // want got in [lo, hi], milliseconds
		whatWant string
	}{
		{"first answer sets it", false, func(e *latencyEWMA) float64 {
			e.observe(ms(20), t0)
			return e.value(t0) / 1e6
		}, 20, 20, "the answer"},
		{"steady answers converge", false, func(e *latencyEWMA) float64 {
			e.observe(ms(20), t0)
			now := steady(e, t0, 5*tau, ms(2))
			return e.value(now) / 1e6
		}, 2, 2.2, "the steady latency"},
		{"one late answer barely moves a busy instance", false, func(e *latencyEWMA) float64 {
			now := steady(e, t0, tau, ms(2))
			e.observe(ms(30), now)
			return e.value(now) / 1e6
		}, 2, 2.1, "about 2 ms"},
		{"with the peak it jumps to the late answer", true, func(e *latencyEWMA) float64 {
			now := steady(e, t0, tau, ms(2))
			e.observe(ms(30), now)
			now = steady(e, now.Add(2*time.Millisecond), tau/2, ms(2))
			return e.value(now) / 1e6
		}, 15, 30, "still far above 2 ms a second later"},
		{"a slow instance's answers take over within tau", false, func(e *latencyEWMA) float64 {
			now := steady(e, t0, tau, ms(2))
			now = steady(e, now, tau, ms(20))
			return e.value(now) / 1e6
		}, 12, 20, "most of the way to 20 ms"},
		{"unchosen, it decays toward zero", false, func(e *latencyEWMA) float64 {
			e.observe(ms(20), t0)
			return e.value(t0.Add(2*tau)) / 1e6
		}, 20 * math.Exp(-2) * 0.99, 20 * math.Exp(-2) * 1.01, "20 ms × e^-2"},
		{"a probe after a long wait sets it almost alone", false, func(e *latencyEWMA) float64 {
			e.observe(ms(20), t0)
			at := t0.Add(3 * tau)
			e.observe(ms(2), at)
			return e.value(at) / 1e6
		}, 2, 3.1, "about the probe's 2 ms"},
		{"reading does not move its clock", false, func(e *latencyEWMA) float64 {
			e.observe(ms(2), t0)
			for i := range 1000 {
				e.value(t0.Add(time.Duration(i) * time.Millisecond))
			}
			at := t0.Add(time.Second)
			e.observe(ms(20), at)
			return e.value(at) / 1e6
		}, 7, 10, "2 + 18 × (1 - e^-0.5)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.run(newLatencyEWMA(tau, tt.peak))
			if got < tt.lo || got > tt.hi {
				t.Errorf("estimate %.3f ms, want %s (%.3f..%.3f)", got, tt.whatWant, tt.lo, tt.hi)
			}
		})
	}
}
