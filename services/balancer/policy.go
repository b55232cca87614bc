package balancer

import (
	"errors"
	"fmt"
	"time"
)

// Step is one input's adjustment in the weight policy: a value below Good
// adds Bonus to the base weight, a value above Bad takes Penalty off it,
// anything between leaves it alone.
type Step struct {
	// Good is the value below which the input earns Bonus.
	Good float64
	// Bad is the value above which the input costs Penalty.
	Bad float64
	// Bonus is added for a good value.
	Bonus float64
	// Penalty is taken off for a bad value.
	Penalty float64
}

func (s Step) apply(v float64) float64 {
	switch {
	case v < s.Good:
		return s.Bonus
	case v > s.Bad:
		return -s.Penalty
	}
	return 0
}

// Policy turns an instance's inputs into a weight. DefaultPolicy is the
// reference document's policy (base 100; latency, error rate and CPU
// steps; clamp 10..200; EWMA 0.7 old / 0.3 new) plus what gRPC's weighted
// round robin (gRFC A58) and Envoy's slow start added since: a blackout
// period, expiry, health gating and a ramp for fresh instances.
type Policy struct {
	// Base is the weight before any step (100).
	Base float64
	// Min and Max clamp a live instance's weight (10 and 200). Weight 0
	// is kept for instances that must get nothing (suspect, dead, left).
	Min, Max float64
	// Smoothing is the share of the old weight in the EWMA (0.7): each
	// report moves the weight 1-Smoothing of the way to the new value.
	Smoothing float64

	// Latency steps on the mean latency in milliseconds (the reference
	// document's < 100 ms: +20, > 500 ms: -30).
	Latency Step
	// RelativeLatency steps on the latency as a multiple of the median
	// latency of the service's instances (> 2x: -30). Platform services
	// answer in milliseconds, far below the absolute steps, so without
	// this a 10x slower instance would keep its weight.
	RelativeLatency Step
	// ErrorRate steps on the share of failed requests (< 1%: +10,
	// > 5%: -20).
	ErrorRate Step
	// CPU steps on the process's share of the machine's CPU (< 50%: +15,
	// > 80%: -25).
	CPU Step

	// FailureProbability above this lowers the weight in proportion, by
	// a factor 1-p, before the detector declares the instance dead (0.2).
	FailureProbability float64

	// Blackout is how long a new instance gets the mean weight of its
	// service before its own reports count (gRPC: 10 s).
	Blackout time.Duration
	// Expiry is how long a weight stays valid without a report; after
	// it the instance gets the mean weight again, as if new (gRPC: 3 min;
	// ours is shorter because heartbeats come every second).
	Expiry time.Duration
	// Forget is how long after its last report an instance is dropped
	// from the table and its WEIGHTS key deleted.
	Forget time.Duration
	// SlowStart ramps a new instance's weight from SlowStartMin of its
	// value to all of it over this long after its first report (Envoy's
	// slow start; 0 disables).
	SlowStart time.Duration
	// SlowStartMin is the share of its weight a brand-new instance gets
	// (0.1).
	SlowStartMin float64
}

// DefaultPolicy returns the reference document's policy with the
// production additions at their defaults.
func DefaultPolicy() Policy {
	return Policy{
		Base: 100, Min: 10, Max: 200, Smoothing: 0.7,
		Latency:            Step{Good: 100, Bad: 500, Bonus: 20, Penalty: 30},
		RelativeLatency:    Step{Good: 0, Bad: 2, Bonus: 0, Penalty: 30},
		ErrorRate:          Step{Good: 0.01, Bad: 0.05, Bonus: 10, Penalty: 20},
		CPU:                Step{Good: 0.5, Bad: 0.8, Bonus: 15, Penalty: 25},
		FailureProbability: 0.2,
		Blackout:           10 * time.Second,
		Expiry:             10 * time.Second,
		Forget:             time.Minute,
		SlowStart:          10 * time.Second,
		SlowStartMin:       0.1,
	}
}

func (p Policy) validate() error {
	switch {
	case p.Base <= 0 || p.Min <= 0 || p.Max < p.Min:
		return fmt.Errorf("policy: want 0 < min (%v) <= max (%v) and base (%v) > 0", p.Min, p.Max, p.Base)
	case p.Smoothing < 0 || p.Smoothing >= 1:
		return fmt.Errorf("policy: smoothing %v not in [0,1)", p.Smoothing)
	case p.Blackout < 0 || p.SlowStart < 0 || p.Expiry <= 0 || p.Forget < p.Expiry:
		return errors.New("policy: want blackout, slow start >= 0 and 0 < expiry <= forget")
	case p.SlowStartMin < 0 || p.SlowStartMin > 1:
		return fmt.Errorf("policy: slow start minimum %v not in [0,1]", p.SlowStartMin)
	}
	return nil
}

// Target returns the weight the inputs call for, before smoothing: the
// base, each step, clamped to Min..Max. medianMS is the median latency of
// the service's instances (0: unknown, the relative step is skipped).
func (p Policy) Target(in Inputs, medianMS float64) float64 {
	w := p.Base
	lat := in.LatencyMS
	abs := p.Latency.apply(lat)
	if medianMS > 0 && lat > 0 {
		// The worse of the two latency verdicts counts: a slow instance
		// should not earn the absolute bonus all instances share.
		if rel := p.RelativeLatency.apply(lat / medianMS); rel < 0 {
			abs = min(abs, rel)
		}
	}
	w += abs
	w += p.ErrorRate.apply(in.ErrorRate)
	w += p.CPU.apply(in.CPU)
	return clamp(w, p.Min, p.Max)
}

// smooth returns the EWMA of old and target (old 0: none yet).
func (p Policy) smooth(old, target float64) float64 {
	if old == 0 {
		return target
	}
	return p.Smoothing*old + (1-p.Smoothing)*target
}

// ramp returns the slow-start share of its weight an instance first seen
// age ago gets.
func (p Policy) ramp(age time.Duration) float64 {
	if p.SlowStart <= 0 || age >= p.SlowStart {
		return 1
	}
	return max(p.SlowStartMin, float64(age)/float64(p.SlowStart))
}

func clamp(v, lo, hi float64) float64 { return max(lo, min(hi, v)) }
