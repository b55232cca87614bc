package balancer

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
)

// Options configure a balancer instance. A zero field takes its default,
// so Options{Conn: nc} is a production balancer.
type Options struct {
	// Conn is the NATS connection. Required.
	Conn *nats.Conn
	// Logger receives the balancer's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the balancer's metrics (nil: not exported).
	Registerer prometheus.Registerer
	// HeartbeatInterval is how often the balancer's own instance
	// heartbeats (default 1s; negative disables).
	HeartbeatInterval time.Duration

	// Policy computes weights (zero: DefaultPolicy()).
	Policy Policy
	// TickInterval is how often weights are recomputed and changed ones
	// written (default 1s). A MEMBERS change is acted on at once.
	TickInterval time.Duration
	// StatsInterval is how often $SRV.STATS is polled (default 5s).
	StatsInterval time.Duration
	// RefreshInterval rewrites a record whose weight did not change, so
	// its inputs stay current (default 10s).
	RefreshInterval time.Duration
	// LeaseTTL and LeaseRenew govern the one weight writer (3s, 1s).
	LeaseTTL, LeaseRenew time.Duration

	// Router configures the router behind route.<subject>; its Conn and
	// Weights are set by the balancer.
	Router RouterOptions

	// Leaders places stream and consumer RAFT leaders
	// (leaders.Placer{}); nil turns leader placement off: no periodic
	// pass, and balancer.balance answers unavailable.
	Leaders LeaderPlacer
	// LeaderInterval is how often the lease holder checks stream and
	// consumer leaders and evens them out when a node leads more than
	// one group above another (default 1m; negative disables).
	LeaderInterval time.Duration
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Policy == (Policy{}) {
		o.Policy = DefaultPolicy()
	}
	o.HeartbeatInterval = cmp.Or(o.HeartbeatInterval, service.DefaultHeartbeatInterval)
	o.TickInterval = cmp.Or(o.TickInterval, time.Second)
	o.StatsInterval = cmp.Or(o.StatsInterval, 5*time.Second)
	o.RefreshInterval = cmp.Or(o.RefreshInterval, 10*time.Second)
	o.LeaseTTL = cmp.Or(o.LeaseTTL, 3*time.Second)
	o.LeaseRenew = cmp.Or(o.LeaseRenew, time.Second)
	o.LeaderInterval = cmp.Or(o.LeaderInterval, time.Minute)
}

// validate checks filled options; the lease settings are checked by
// lease.NewElected, also in New.
func (o *Options) validate() error {
	if o.Conn == nil {
		return errors.New("balancer: nil NATS connection")
	}
	if o.TickInterval < 0 || o.StatsInterval < 0 || o.RefreshInterval < 0 {
		return errors.New("balancer: negative interval")
	}
	if o.Router.Strategy < P2C || o.Router.Strategy > QueueGroup {
		return fmt.Errorf("balancer: unknown router strategy %d", o.Router.Strategy)
	}
	return o.Policy.validate()
}
