package detector

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a detector. Every duration that shapes detection is
// expressed relative to an instance's heartbeat interval, so one set of
// options serves instances that beat every 50 ms and every 10 s alike. Use
// DefaultOptions or LocalOptions and change what you need; Options do not
// change after New.
type Options struct {
	// Conn is the NATS connection the detector listens and writes on.
	// Required by New; the simulation and the scale measurement run the
	// detection logic without one.
	Conn *nats.Conn
	// Logger receives the detector's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the detector's metrics (nil: not exported).
	Registerer prometheus.Registerer
	// HeartbeatInterval is how often the detector's own micro service
	// instance heartbeats (default 1s; negative disables).
	HeartbeatInterval time.Duration

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
	// Akka's acceptable heartbeat pause, relative. The network quality
	// class multiplies it (see Quality.Multiplier).
	PauseIntervals float64
	// PauseMemoryMargin widens the tolerated pause to this multiple of the
	// longest silence the instance recently recovered from, so an instance
	// known to stall (GC, loss bursts) is not declared dead for doing it
	// again.
	PauseMemoryMargin float64
	// PauseMemoryDecay is the per-heartbeat decay of that remembered
	// silence (0.995: it halves in about 140 heartbeats).
	PauseMemoryDecay float64
	// MaxPauseFactor caps the tolerated pause at this multiple of the
	// quality-scaled PauseIntervals, so one long stall does not blind the
	// detector to a real death.
	MaxPauseFactor float64

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
	// Learn enables online training of the predictor; off, it only scores.
	Learn bool

	// EvalInterval is how often states are evaluated against the clock.
	EvalInterval time.Duration
	// RefreshInterval is how often an alive instance's record in MEMBERS is
	// rewritten (phi, last_seen, quality, failure_probability) when its
	// state has not changed. State changes are written at once.
	RefreshInterval time.Duration
	// MaxWriteRate bounds refresh writes to MEMBERS per second across all
	// instances; state changes are never held back by it.
	MaxWriteRate float64
	// ForgetAfter is how long a dead or left instance is kept before it is
	// dropped from memory and its MEMBERS key deleted.
	ForgetAfter time.Duration

	// LeaseTTL is how long the active detector's lease lasts without
	// renewal; a standby takes over after seeing no renewal for this long.
	LeaseTTL time.Duration
	// LeaseRenew is how often the active detector renews its lease and a
	// standby checks it.
	LeaseRenew time.Duration

	// ProbeInterval is how often round-trip probes are sent
	// ($SRV.PING.<service>.<instance>); 0 disables probing.
	ProbeInterval time.Duration
	// ProbesPerSecond bounds the probe rate across all instances.
	ProbesPerSecond float64
	// ProbeTimeout is how long a probe waits; a timeout counts as a
	// round trip of this length.
	ProbeTimeout time.Duration

	// Seed seeds the detector's randomness (loop start delays, refresh
	// spreading, training samples); 0 picks one from the clock. The
	// simulation sets it so runs repeat exactly.
	Seed uint64
}

// DefaultOptions returns options for production: 1 s heartbeats by default,
// a 100 ms evaluation tick, a 1 s lease renewed every 250 ms (handover in
// about 1.5 s) and a MEMBERS refresh every 10 s.
func DefaultOptions() Options {
	return Options{
		HeartbeatInterval: time.Second,
		DefaultInterval:   time.Second,
		WindowSize:        200,
		PhiThreshold:      8,
		SuspectFraction:   0.5,
		MinStdDevFraction: 0.1,
		PauseIntervals:    6,
		PauseMemoryMargin: 1.25,
		PauseMemoryDecay:  0.995,
		MaxPauseFactor:    3,
		PredictionHorizon: 20,
		LearningRate:      0.05,
		NegativeSampling:  0.1,
		ConfirmDeath:      5 * time.Second,
		Learn:             true,
		EvalInterval:      100 * time.Millisecond,
		RefreshInterval:   10 * time.Second,
		MaxWriteRate:      2000,
		ForgetAfter:       24 * time.Hour,
		LeaseTTL:          time.Second,
		LeaseRenew:        250 * time.Millisecond,
		ProbeInterval:     time.Second,
		ProbesPerSecond:   200,
		ProbeTimeout:      time.Second,
	}
}

// LocalOptions returns DefaultOptions tuned for one machine and short
// heartbeat intervals (tests, demos): a 10 ms tick, a 500 ms lease and a
// 1 s refresh.
func LocalOptions() Options {
	o := DefaultOptions()
	o.HeartbeatInterval = 50 * time.Millisecond
	o.DefaultInterval = 100 * time.Millisecond
	o.EvalInterval = 10 * time.Millisecond
	o.RefreshInterval = time.Second
	o.ConfirmDeath = time.Second
	o.LeaseTTL = 500 * time.Millisecond
	o.LeaseRenew = 100 * time.Millisecond
	o.ProbeInterval = 200 * time.Millisecond
	o.ProbeTimeout = 200 * time.Millisecond
	return o
}

// fill completes zero fields from DefaultOptions.
func (o *Options) fill() {
	d := DefaultOptions()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = d.HeartbeatInterval
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setF := func(v *float64, def float64) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&o.DefaultInterval, d.DefaultInterval)
	if o.WindowSize == 0 {
		o.WindowSize = d.WindowSize
	}
	setF(&o.PhiThreshold, d.PhiThreshold)
	setF(&o.SuspectFraction, d.SuspectFraction)
	setF(&o.MinStdDevFraction, d.MinStdDevFraction)
	setF(&o.PauseIntervals, d.PauseIntervals)
	setF(&o.PauseMemoryMargin, d.PauseMemoryMargin)
	setF(&o.PauseMemoryDecay, d.PauseMemoryDecay)
	setF(&o.MaxPauseFactor, d.MaxPauseFactor)
	if o.PredictionHorizon == 0 {
		o.PredictionHorizon = d.PredictionHorizon
	}
	setF(&o.LearningRate, d.LearningRate)
	setF(&o.NegativeSampling, d.NegativeSampling)
	setDur(&o.ConfirmDeath, d.ConfirmDeath)
	setDur(&o.EvalInterval, d.EvalInterval)
	setDur(&o.RefreshInterval, d.RefreshInterval)
	setF(&o.MaxWriteRate, d.MaxWriteRate)
	setDur(&o.ForgetAfter, d.ForgetAfter)
	setDur(&o.LeaseTTL, d.LeaseTTL)
	setDur(&o.LeaseRenew, d.LeaseRenew)
	setF(&o.ProbesPerSecond, d.ProbesPerSecond)
	setDur(&o.ProbeTimeout, d.ProbeTimeout)
}

// validate checks the detection settings (not Conn: see New).
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
	check(o.PauseIntervals >= 0, "pause intervals must not be negative")
	check(o.PauseMemoryMargin >= 1, "pause memory margin must be at least 1")
	check(o.PauseMemoryDecay > 0 && o.PauseMemoryDecay <= 1, "pause memory decay %g out of range (0,1]", o.PauseMemoryDecay)
	check(o.MaxPauseFactor >= 1, "max pause factor must be at least 1")
	check(o.PredictionHorizon >= 1 && o.PredictionHorizon <= 1000, "prediction horizon %d out of range [1,1000]", o.PredictionHorizon)
	check(o.LearningRate > 0, "learning rate must be positive")
	check(o.NegativeSampling > 0 && o.NegativeSampling <= 1, "negative sampling %g out of range (0,1]", o.NegativeSampling)
	check(o.EvalInterval > 0, "eval interval must be positive")
	check(o.RefreshInterval > 0, "refresh interval must be positive")
	check(o.MaxWriteRate > 0, "max write rate must be positive")
	check(o.LeaseRenew > 0 && o.LeaseTTL > o.LeaseRenew, "lease ttl (%s) must exceed the renew interval (%s)", o.LeaseTTL, o.LeaseRenew)
	check(o.ProbeInterval >= 0, "probe interval must not be negative")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detector options: %w", err)
	}
	return nil
}
