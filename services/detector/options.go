package detector

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/services/detector/accrual"
)

// Options configure a detector. The zero value of a field means its value
// in DefaultOptions, so Options{Conn: nc} is a production detector. Use
// DefaultOptions or LocalOptions and change what you need; Options do not
// change after New.
type Options struct {
	// Conn is the NATS connection the detector listens and writes on.
	// Required.
	Conn *nats.Conn
	// Logger receives the detector's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the detector's metrics (nil: not exported).
	Registerer prometheus.Registerer
	// HeartbeatInterval is how often the detector's own micro service
	// instance heartbeats (default 1s; negative disables).
	HeartbeatInterval time.Duration

	// Options are the detection settings: phi accrual, network quality,
	// the predictor, record refreshes and forgetting (see accrual.Options;
	// their fields read as the detector's own, o.PhiThreshold).
	accrual.Options

	// EvalInterval is how often states are evaluated against the clock.
	EvalInterval time.Duration
	// MaxWriteRate bounds refresh writes to MEMBERS per second across all
	// instances; state changes are never held back by it.
	MaxWriteRate float64

	// LeaseTTL is how long the active detector's lease lasts without
	// renewal; a standby takes over after seeing no renewal for this long.
	LeaseTTL time.Duration
	// LeaseRenew is how often the active detector renews its lease and a
	// standby checks it.
	LeaseRenew time.Duration

	// ProbeInterval is how often round-trip probes are sent to micro
	// service instances ($SRV.PING.<service>.<instance>): 0 means the
	// default (1s), a negative value disables probing.
	ProbeInterval time.Duration
	// ProbesPerSecond bounds the probe rate across all instances.
	ProbesPerSecond float64
	// ProbeTimeout is how long a probe waits; a timeout counts as a
	// round trip of this length.
	ProbeTimeout time.Duration
}

// DefaultOptions returns options for production: accrual.DefaultOptions
// (1 s heartbeats by default, a MEMBERS refresh every 10 s), a 100 ms
// evaluation tick, a 1 s lease renewed every 250 ms (handover in about
// 1.5 s) and a probe of each instance about every second.
func DefaultOptions() Options {
	return Options{
		HeartbeatInterval: time.Second,
		Options:           accrual.DefaultOptions(),
		EvalInterval:      100 * time.Millisecond,
		MaxWriteRate:      2000,
		LeaseTTL:          time.Second,
		LeaseRenew:        250 * time.Millisecond,
		ProbeInterval:     time.Second,
		ProbesPerSecond:   200,
		ProbeTimeout:      time.Second,
	}
}

// LocalOptions returns DefaultOptions tuned for one machine and short
// heartbeat intervals (tests, demos): accrual.LocalOptions, a 10 ms tick,
// a 500 ms lease and 200 ms probes.
func LocalOptions() Options {
	o := DefaultOptions()
	o.Options = accrual.LocalOptions()
	o.HeartbeatInterval = 50 * time.Millisecond
	o.EvalInterval = 10 * time.Millisecond
	o.LeaseTTL = 500 * time.Millisecond
	o.LeaseRenew = 100 * time.Millisecond
	o.ProbeInterval = 200 * time.Millisecond
	o.ProbeTimeout = 200 * time.Millisecond
	return o
}

// setDefaults completes zero fields of the service's settings from
// DefaultOptions; accrual.NewTable fills the detection settings.
func (o *Options) setDefaults() {
	d := DefaultOptions()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.HeartbeatInterval = cmp.Or(o.HeartbeatInterval, d.HeartbeatInterval)
	o.EvalInterval = cmp.Or(o.EvalInterval, d.EvalInterval)
	o.MaxWriteRate = cmp.Or(o.MaxWriteRate, d.MaxWriteRate)
	o.LeaseTTL = cmp.Or(o.LeaseTTL, d.LeaseTTL)
	o.LeaseRenew = cmp.Or(o.LeaseRenew, d.LeaseRenew)
	o.ProbeInterval = cmp.Or(o.ProbeInterval, d.ProbeInterval)
	o.ProbesPerSecond = cmp.Or(o.ProbesPerSecond, d.ProbesPerSecond)
	o.ProbeTimeout = cmp.Or(o.ProbeTimeout, d.ProbeTimeout)
}

// validate checks the service's settings (not Conn, see New; the
// detection settings are accrual.NewTable's, the lease's
// lease.NewElected's).
func (o *Options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.EvalInterval > 0, "eval interval must be positive")
	check(o.MaxWriteRate > 0, "max write rate must be positive")
	check(o.ProbesPerSecond > 0, "probes per second must be positive")
	check(o.ProbeTimeout > 0, "probe timeout must be positive")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detector options: %w", err)
	}
	return nil
}
