package accrual

import (
	"cmp"
	"errors"
	"fmt"
	"time"
)

// Options are the detection settings of a Table. Every duration that
// shapes detection is expressed relative to an instance's heartbeat
// interval, so one set of options serves instances that beat every 50 ms
// and every 10 s alike. The zero value of a field means its value in
// DefaultOptions; use DefaultOptions or LocalOptions and change what you
// need.
type Options struct {
	// DefaultInterval is the heartbeat interval assumed for an instance
	// that announces none (no interval_ms) and has not yet sent two
	// heartbeats.
	DefaultInterval time.Duration
	// WindowSize is how many inter-arrival times are kept per instance for
	// the phi accrual estimate (Akka keeps 1000; fewer adapts faster).
	WindowSize int
	// PhiThreshold is the suspicion level at which an instance is declared
	// dead (Akka's default is 8: a one in 10^8 chance the silence is
	// normal).
	PhiThreshold float64
	// SuspectFraction places the suspect threshold: an instance becomes
	// suspect when it has been silent for this fraction of the pause it is
	// allowed before it is dead (0.5: half-way).
	SuspectFraction float64
	// MinStdDevFraction is the floor of the inter-arrival standard
	// deviation, as a fraction of the interval (Akka: 100 ms for 1 s
	// heartbeats, 0.1), so a perfectly regular sender is not declared dead
	// the moment one heartbeat is a little late.
	MinStdDevFraction float64
	// PauseIntervals is the silence, in heartbeat intervals, that an
	// instance on an excellent path may show without being declared dead:
	// Akka's acceptable heartbeat pause, relative. A worse network quality
	// class multiplies it: good 1.2, fair 1.5, poor 2, very poor 3. It is
	// the whole tolerance of a member with a clean record (see
	// StallIntervals and TrustAfter).
	PauseIntervals float64
	// StallIntervals is the silence, in intervals, that marks a member
	// that recovers from it as one that stalls: from then on it is allowed
	// PauseMemoryMargin times the longest silence any member of the fleet
	// recovered from (a quiet member keeps its own, tighter, tolerance).
	StallIntervals float64
	// TrustAfter is how long a member must heartbeat without stalling
	// before it is held to its own tolerance; until then it is allowed the
	// fleet's longest recovered silence, as a member that stalls is.
	TrustAfter time.Duration
	// PauseMemoryMargin is how much longer than the longest silence any
	// member of the fleet recovered from (lately) a member that stalls, or
	// is young, may be silent.
	PauseMemoryMargin float64
	// PauseMemoryHalfLife is how fast that longest silence is forgotten:
	// it halves in this time.
	PauseMemoryHalfLife time.Duration
	// LateProbeIntervals is the silence, in heartbeat intervals, after
	// which a member that answers probes is probed at once: "no responders"
	// then means its process is gone and it is declared dead without
	// waiting out the pause it is allowed (see Table.Gone). Negative
	// disables late probes.
	LateProbeIntervals float64

	// PredictionHorizon is how many heartbeats before a death count as
	// "preceded the death": the predictor learns from them and its
	// probability means "dies within this many heartbeats".
	PredictionHorizon int
	// LearningRate is the predictor's AdaGrad step size.
	LearningRate float64
	// NegativeSampling is the fraction of healthy heartbeats the predictor
	// trains on (the rest only update feature scaling), to keep training
	// cheap and the classes less lopsided.
	NegativeSampling float64
	// ConfirmDeath is how long an instance must stay dead before the
	// heartbeats that preceded the death are used for training, so a
	// stall that is declared dead and then recovers teaches nothing wrong.
	ConfirmDeath time.Duration
	// NoLearn turns off online training of the predictor: it only scores,
	// with the model it has (the prior, or one given to SetModel).
	NoLearn bool

	// RefreshInterval is how often, on average, an alive or suspect
	// instance's record is due for rewriting (phi, last_seen, quality,
	// failure_probability) when its state has not changed. State changes
	// are due at once; a dead or left record is refreshed six times less
	// often.
	RefreshInterval time.Duration
	// ForgetAfter is how long a dead or left instance is kept before it is
	// dropped from the table (and its record deleted).
	ForgetAfter time.Duration

	// Seed seeds the table's randomness (refresh spreading, training
	// samples); 0 picks one from the clock. Simulations set it so runs
	// repeat exactly.
	Seed uint64
}

// DefaultOptions returns the settings for production: 1 s heartbeats by
// default, phi threshold 8 over a 200-interval window, a tolerated pause
// of 6 intervals on an excellent path, a 20-heartbeat prediction horizon
// and a record refresh every 10 s.
func DefaultOptions() Options {
	return Options{
		DefaultInterval:     time.Second,
		WindowSize:          200,
		PhiThreshold:        8,
		SuspectFraction:     0.5,
		MinStdDevFraction:   0.1,
		PauseIntervals:      6,
		StallIntervals:      2,
		TrustAfter:          30 * time.Second,
		PauseMemoryMargin:   1.1,
		PauseMemoryHalfLife: time.Hour,
		LateProbeIntervals:  2,
		PredictionHorizon:   20,
		LearningRate:        0.05,
		NegativeSampling:    0.1,
		ConfirmDeath:        5 * time.Second,
		RefreshInterval:     10 * time.Second,
		ForgetAfter:         24 * time.Hour,
	}
}

// LocalOptions returns DefaultOptions tuned for one machine and short
// heartbeat intervals (tests, demos): 100 ms heartbeats by default, deaths
// confirmed after 1 s and a 1 s refresh.
func LocalOptions() Options {
	o := DefaultOptions()
	o.DefaultInterval = 100 * time.Millisecond
	o.ConfirmDeath = time.Second
	o.RefreshInterval = time.Second
	return o
}

// setDefaults completes zero fields from DefaultOptions.
func (o *Options) setDefaults() {
	d := DefaultOptions()
	o.DefaultInterval = cmp.Or(o.DefaultInterval, d.DefaultInterval)
	o.WindowSize = cmp.Or(o.WindowSize, d.WindowSize)
	o.PhiThreshold = cmp.Or(o.PhiThreshold, d.PhiThreshold)
	o.SuspectFraction = cmp.Or(o.SuspectFraction, d.SuspectFraction)
	o.MinStdDevFraction = cmp.Or(o.MinStdDevFraction, d.MinStdDevFraction)
	o.PauseIntervals = cmp.Or(o.PauseIntervals, d.PauseIntervals)
	o.PauseMemoryMargin = cmp.Or(o.PauseMemoryMargin, d.PauseMemoryMargin)
	o.StallIntervals = cmp.Or(o.StallIntervals, d.StallIntervals)
	o.TrustAfter = cmp.Or(o.TrustAfter, d.TrustAfter)
	o.PauseMemoryHalfLife = cmp.Or(o.PauseMemoryHalfLife, d.PauseMemoryHalfLife)
	o.LateProbeIntervals = cmp.Or(o.LateProbeIntervals, d.LateProbeIntervals)
	o.PredictionHorizon = cmp.Or(o.PredictionHorizon, d.PredictionHorizon)
	o.LearningRate = cmp.Or(o.LearningRate, d.LearningRate)
	o.NegativeSampling = cmp.Or(o.NegativeSampling, d.NegativeSampling)
	o.ConfirmDeath = cmp.Or(o.ConfirmDeath, d.ConfirmDeath)
	o.RefreshInterval = cmp.Or(o.RefreshInterval, d.RefreshInterval)
	o.ForgetAfter = cmp.Or(o.ForgetAfter, d.ForgetAfter)
}

// validate checks filled options. A zero field was replaced by its
// default, so every check refuses zero and below alike: a bound that
// allowed zero would name a value no caller can set.
func (o *Options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.DefaultInterval > 0, "default interval must be positive")
	check(o.WindowSize >= 2 && o.WindowSize <= 100000, "window size %d out of range [2,100000]", o.WindowSize)
	check(o.PhiThreshold > 0 && o.PhiThreshold <= 30, "phi threshold %g out of range (0,30]", o.PhiThreshold)
	check(o.SuspectFraction > 0 && o.SuspectFraction <= 1, "suspect fraction %g out of range (0,1]", o.SuspectFraction)
	check(o.MinStdDevFraction > 0, "min std dev fraction must be positive")
	check(o.PauseIntervals > 0, "pause intervals must be positive")
	check(o.PauseMemoryMargin >= 1, "pause memory margin must be at least 1")
	check(o.StallIntervals >= 1, "stall intervals must be at least 1")
	check(o.TrustAfter > 0, "trust after must be positive")
	check(o.PauseMemoryHalfLife > 0, "pause memory half-life must be positive")
	check(o.PredictionHorizon >= 1 && o.PredictionHorizon <= 1000, "prediction horizon %d out of range [1,1000]", o.PredictionHorizon)
	check(o.LearningRate > 0, "learning rate must be positive")
	check(o.NegativeSampling > 0 && o.NegativeSampling <= 1, "negative sampling %g out of range (0,1]", o.NegativeSampling)
	check(o.ConfirmDeath > 0, "confirm death must be positive")
	check(o.RefreshInterval > 0, "refresh interval must be positive")
	check(o.ForgetAfter > 0, "forget after must be positive")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detection options: %w", err)
	}
	return nil
}
