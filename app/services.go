package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/services/admin"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/services/balancer/leaders"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/detector"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
)

// Services returns every service this binary can run, in start order (they
// stop in reverse), each entry with options of its own at their defaults.
// Every call returns fresh entries, so two lists never share settings.
//
// Adding a service means writing its entry below and listing it here.
func Services() []Service {
	return []Service{
		adminService(),
		detectorService(),
		replicatorService(),
		txnService(),
		balancerService(),
		alertingService(),
		consumeService(),
	}
}

// Service is one entry of the service list: the service's name, the flags
// and options it owns, and how it is built.
type Service struct {
	// Name selects the service in --services and names it in logs and
	// errors.
	Name string
	// Flags registers the service's own flags on fs, bound to options the
	// entry owns (nil: the service has no flags).
	Flags func(fs *pflag.FlagSet)
	// Validate checks the entry's options once flags are parsed (nil:
	// nothing to check). It runs for every entry, selected or not; its
	// error is reported as is, so it names what is wrong.
	Validate func() error
	// New builds the service from the shared infrastructure and the
	// entry's options.
	New func(d Deps) (Runner, error)
}

// Deps is the shared infrastructure the wiring hands every service's New.
// A service's own settings live in its entry, not here.
type Deps struct {
	// Conn is the process's NATS connection.
	Conn *nats.Conn
	// JS is a JetStream context on Conn.
	JS jetstream.JetStream
	// Logger is the process logger; constructors add their component.
	Logger *slog.Logger
	// Registerer is the process's one Prometheus registry.
	Registerer prometheus.Registerer
	// HeartbeatInterval is how often service instances heartbeat.
	HeartbeatInterval time.Duration
	// Cluster is the embedded cluster, nil when services run against an
	// external NATS cluster (--nats).
	Cluster *cluster.Cluster
	// Authenticated is set when this process logs in to NATS with
	// credentials (--auth, --nkey, --creds): NATS access follows roles, and
	// a service's own listeners must not be a way around them.
	Authenticated bool
}

// Runner is a constructed service: Run serves until ctx is done; Ready is
// closed once it serves.
type Runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// adminService answers admin.status with the cluster's nodes, streams and
// service instances.
func adminService() Service {
	return Service{
		Name: "admin",
		New: func(d Deps) (Runner, error) {
			var c admin.Cluster // a nil *cluster.Cluster must stay a nil interface
			if d.Cluster != nil {
				c = adminCluster{d.Cluster}
			}
			return admin.New(admin.Options{
				Conn: d.Conn, JS: d.JS, Cluster: c,
				HeartbeatInterval: d.HeartbeatInterval,
				Logger:            d.Logger, Registerer: d.Registerer,
			})
		},
	}
}

// adminCluster shows the embedded cluster to the admin service through
// the small interface it declares.
type adminCluster struct{ *cluster.Cluster }

func (c adminCluster) Nodes() []admin.Node {
	nodes := c.Cluster.Nodes()
	out := make([]admin.Node, len(nodes))
	for i, n := range nodes {
		out[i] = admin.Node{Name: n.Name(), URL: n.ClientURL(), Running: n.Server() != nil}
	}
	return out
}

// detectorService decides from heartbeats which service instances are
// alive, suspect, dead or left.
func detectorService() Service {
	return Service{
		Name: "detector",
		New: func(d Deps) (Runner, error) {
			o := detector.DefaultOptions()
			o.Conn = d.Conn
			o.Logger = d.Logger
			o.Registerer = d.Registerer
			if d.HeartbeatInterval != 0 {
				o.HeartbeatInterval = d.HeartbeatInterval
			}
			return detector.New(o)
		},
	}
}

// replicatorService ingests events into the EVENTS stream; its --ingest-*
// flags set its envelope and rate-limit options.
func replicatorService() Service {
	var o replicator.Options
	return Service{
		Name: "replicator",
		Flags: func(fs *pflag.FlagSet) {
			fs.BoolVar(&o.PerEvent, "ingest-per-event", false, "store one EVENTS message per ingested event (default: events of a topic arriving together share an envelope)")
			fs.Float64Var(&o.TopicRate, "ingest-topic-rate", 0, "ingest events per second allowed per topic (0: unlimited)")
			fs.Float64Var(&o.ClientRate, "ingest-client-rate", 0, "ingest events per second allowed per client (0: unlimited)")
			fs.DurationVar(&o.RequestTimeout, "ingest-request-timeout", replicator.DefaultRequestTimeout, "longest an ingest request at quorum or all waits before it is answered unavailable with retry_after_ms")
			o.Buffer = replicator.DefaultIngestBuffer
			fs.Var((*byteSize)(&o.Buffer), "ingest-buffer", "memory for ingested events not yet stored, e.g. 512MiB or 2GiB; beyond it fire-and-forget events are dropped and counted")
		},
		Validate: func() error {
			if o.TopicRate < 0 || o.ClientRate < 0 {
				return errors.New("ingest rates must not be negative")
			}
			if o.RequestTimeout < 0 {
				return fmt.Errorf("--ingest-request-timeout %s must not be negative", o.RequestTimeout)
			}
			if o.Buffer != 0 && o.Buffer < 1<<20 {
				return fmt.Errorf("--ingest-buffer %s is below 1MiB", byteSize(o.Buffer))
			}
			return nil
		},
		New: func(d Deps) (Runner, error) {
			opts := o
			opts.Conn, opts.JS = d.Conn, d.JS
			opts.HeartbeatInterval = d.HeartbeatInterval
			opts.Logger, opts.Registerer = d.Logger, d.Registerer
			return replicator.New(opts)
		},
	}
}

// txnService serves serializable multi-key transactions on the STATE bucket.
func txnService() Service {
	return Service{
		Name: "txn",
		New: func(d Deps) (Runner, error) {
			return txn.New(txn.Options{
				Conn:              d.Conn,
				HeartbeatInterval: d.HeartbeatInterval,
				Logger:            d.Logger,
				Registerer:        d.Registerer,
			})
		},
	}
}

// balancerService computes instance weights into WEIGHTS, forwards
// route.<subject> to the best instance and evens out RAFT leaders; its
// --balancer-* flags set the leader check interval and hedged subjects.
func balancerService() Service {
	var o balancer.Options
	return Service{
		Name: "balancer",
		Flags: func(fs *pflag.FlagSet) {
			fs.DurationVar(&o.LeaderInterval, "balancer-leader-interval", time.Minute, "how often to check and even out stream and consumer leaders (0: 1m, negative: never)")
			fs.StringSliceVar(&o.Router.Hedge.Idempotent, "balancer-hedge", nil, "subject filters of idempotent endpoints route.<subject> may send twice when slow (e.g. txn.get)")
		},
		New: func(d Deps) (Runner, error) {
			opts := o
			opts.Conn = d.Conn
			opts.HeartbeatInterval = d.HeartbeatInterval
			opts.Logger, opts.Registerer = d.Logger, d.Registerer
			opts.Leaders = leaders.Placer{}
			return balancer.New(opts)
		},
	}
}

// alertingService evaluates the alerting rules and notifies; its
// --alerts-* flags name the rules file and the Alertmanager API address.
func alertingService() Service {
	var o alerting.Options
	return Service{
		Name: "alerting",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&o.RulesFile, "alerts-file", "", "alerting rules file, e.g. deploy/alerts.yaml (default: the built-in rules); reloaded on SIGHUP and alerts.reload")
			fs.StringVar(&o.HTTPAddr, "alerts-http", "", "serve Alertmanager's API v2 on this address, e.g. 127.0.0.1:9093 (default: off)")
			fs.StringVar(&o.WebConfigFile, "alerts-web-config", "", "Alertmanager web config file for --alerts-http (basic auth, TLS; the format of alertmanager --web.config.file); required with --auth off loopback")
		},
		Validate: func() error {
			if o.RulesFile == "" {
				return nil
			}
			_, err := alerting.LoadConfig(o.RulesFile)
			return err
		},
		New: func(d Deps) (Runner, error) {
			opts := o
			opts.Conn = d.Conn
			opts.HeartbeatInterval = d.HeartbeatInterval
			opts.Logger, opts.Registerer = d.Logger, d.Registerer
			opts.RequireWebConfig = d.Authenticated
			if g, ok := d.Registerer.(prometheus.Gatherer); ok {
				opts.Gatherer = g
			}
			return alerting.New(opts)
		},
	}
}

// consumeService hands out the events of consumer groups to any client
// (consume.<group>.next) and settles them by token (consume.<group>.ack).
func consumeService() Service {
	return Service{
		Name: "consume",
		New: func(d Deps) (Runner, error) {
			return consume.NewService(consume.ServiceOptions{
				Conn:              d.Conn,
				HeartbeatInterval: d.HeartbeatInterval,
				Logger:            d.Logger,
				Registerer:        d.Registerer,
			})
		},
	}
}

// ServiceNames returns the name of every service this binary can run, in
// start order.
func ServiceNames() []string { return names(Services()) }

func names(list []Service) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.Name
	}
	return out
}

// checkList refuses a list with an entry lacking a name or a constructor,
// or a service listed twice.
func checkList(list []Service) error {
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		if s.Name == "" || s.New == nil {
			return fmt.Errorf("service list: entry %q lacks a name or a constructor", s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("service list: %q listed twice", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// selectServices resolves a --services list ("all" or empty = every one)
// against list, keeping list's order.
func selectServices(list []Service, selection []string) ([]Service, error) {
	if len(selection) == 0 || (len(selection) == 1 && selection[0] == "all") {
		return list, nil
	}
	known := names(list)
	for _, n := range selection {
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("unknown service %q (known: %v)", n, known)
		}
	}
	var out []Service
	for _, s := range list {
		if slices.Contains(selection, s.Name) {
			out = append(out, s)
		}
	}
	return out, nil
}

// byteSize is a flag value in bytes: a number with an optional unit, B,
// KiB, MiB, GiB (or K, M, G, also powers of 1024).
type byteSize int

func (b byteSize) String() string {
	for _, u := range []struct {
		name string
		size int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int(b) >= u.size && int(b)%u.size == 0 {
			return strconv.Itoa(int(b)/u.size) + u.name
		}
	}
	return strconv.Itoa(int(b))
}

func (b *byteSize) Set(s string) error {
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(strings.ToLower(s[len(num):]))
	mult, ok := map[string]int{"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}[unit]
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n < 0 || n > math.MaxInt/mult {
		return fmt.Errorf("invalid size %q: use a number of bytes with B, KiB, MiB or GiB", s)
	}
	*b = byteSize(n * mult)
	return nil
}

func (b byteSize) Type() string { return "size" }
