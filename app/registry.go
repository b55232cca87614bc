package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/cluster"
)

// Deps is what the wiring hands every service constructor.
type Deps struct {
	// Conn is the process's NATS connection.
	Conn *nats.Conn
	// JS is a JetStream context on Conn.
	JS jetstream.JetStream
	// Logger is the process logger; constructors add their component.
	Logger *slog.Logger
	// Registerer is the process's one Prometheus registry.
	Registerer prometheus.Registerer
	// Replicas is the replica count of the platform's streams.
	Replicas int
	// HeartbeatInterval is how often service instances heartbeat.
	HeartbeatInterval time.Duration
	// Ingest configures the replicator's ingest service.
	Ingest IngestOptions
	// Cluster is the embedded cluster, nil when services run against an
	// external NATS cluster (--nats).
	Cluster *cluster.Cluster
}

// Runner is a constructed service: Run serves until ctx is done; Ready is
// closed once it serves.
type Runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// Constructor builds one service from the wiring's dependencies.
type Constructor func(d Deps) (Runner, error)

type registration struct {
	order int
	build Constructor
}

var registry = map[string]registration{}

// register adds a service under name; order decides start order (lower
// first) and stop order (reverse).
func register(name string, order int, c Constructor) {
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("service %q registered twice", name))
	}
	registry[name] = registration{order: order, build: c}
}

// ServiceNames returns every service this binary can run, in start order.
func ServiceNames() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := registry[names[i]], registry[names[j]]
		if a.order != b.order {
			return a.order < b.order
		}
		return names[i] < names[j]
	})
	return names
}

// selectServices resolves a --services list ("all" or empty = every one).
func selectServices(list []string) ([]string, error) {
	all := ServiceNames()
	if len(list) == 0 || (len(list) == 1 && list[0] == "all") {
		return all, nil
	}
	var out []string
	for _, n := range all {
		if slices.Contains(list, n) {
			out = append(out, n)
		}
	}
	for _, n := range list {
		if _, ok := registry[n]; !ok {
			return nil, fmt.Errorf("unknown service %q (known: %v)", n, all)
		}
	}
	return out, nil
}

// IngestOptions are the ingest service's settings exposed as flags.
type IngestOptions struct {
	// PerEvent stores one stream message per event even when events of a
	// topic arrive together (readable by the stock CLI, lower throughput).
	PerEvent bool
	// TopicRate and ClientRate are token-bucket rates in events per second
	// per topic and per client (0: unlimited).
	TopicRate, ClientRate float64
}
