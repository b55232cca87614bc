package consume

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/services/txn"
)

// Collector bounds: how long one refresh may take, and how many groups it
// reports (the rest are counted as errors, never silently dropped).
const (
	collectTimeout = 5 * time.Second
	maxGroups      = 256
)

// DefaultCollectInterval is how old the figures a Collector reports may
// be: a scrape within it of the last refresh is answered from the cache.
const DefaultCollectInterval = 5 * time.Second

var (
	descLagEvents = prometheus.NewDesc("platform_consumer_lag_events",
		"Events of the partition not applied yet (a lower bound when platform_consumer_lag_exact is 0).",
		[]string{"group", "partition"}, nil)
	descLagMessages = prometheus.NewDesc("platform_consumer_lag_messages",
		"Stream messages matching the group's filter at or after the partition's position (each may hold events of other partitions).",
		[]string{"group", "partition"}, nil)
	descLagSeconds = prometheus.NewDesc("platform_consumer_lag_seconds",
		"Age of the partition's first unapplied event; 0 when caught up.",
		[]string{"group", "partition"}, nil)
	descCommitted = prometheus.NewDesc("platform_consumer_committed_sequence",
		"Stream sequence of the partition's next event to apply (its committed position).",
		[]string{"group", "partition"}, nil)
	descEpoch = prometheus.NewDesc("platform_consumer_epoch",
		"The partition owner's fencing epoch: it rises each time the partition changes hands.",
		[]string{"group", "partition"}, nil)
	descHead = prometheus.NewDesc("platform_consumer_head_sequence",
		"Last sequence of EVENTS matching the group's filter.",
		[]string{"group"}, nil)
	descMembers = prometheus.NewDesc("platform_consumer_members",
		"Live members of the group.",
		[]string{"group"}, nil)
	descOwned = prometheus.NewDesc("platform_consumer_owned_partitions",
		"Partitions a live member is assigned and has taken.",
		[]string{"group", "member"}, nil)
	descUnowned = prometheus.NewDesc("platform_consumer_unowned_partitions",
		"Partitions no live member is applying: unassigned, or not yet taken by the assigned member.",
		[]string{"group"}, nil)
	descExact = prometheus.NewDesc("platform_consumer_lag_exact",
		"1 when every partition's lag of the group was counted to the stream head.",
		[]string{"group"}, nil)
	descErrors = prometheus.NewDesc("platform_consumer_status_errors_total",
		"Refreshes of consumer group status that failed or skipped groups.",
		nil, nil)
)

// Collector is a prometheus.Collector of every group's status in the
// store's bucket: lag in events, messages and seconds, committed position
// and epoch per partition; head, live members and owned partitions per
// group. It reads the status at scrape time, at most once per interval
// (later scrapes within it answer the same figures), each refresh bounded
// in time. It is safe for concurrent use.
type Collector struct {
	js       jetstream.JetStream
	store    *txn.Store
	interval time.Duration
	log      *slog.Logger

	mu     sync.Mutex
	at     time.Time
	groups []GroupStatus
	errors float64
}

// NewCollector returns a collector on js and store that refreshes at
// most every interval (0: DefaultCollectInterval); log receives refresh
// errors (nil: slog.Default()).
func NewCollector(js jetstream.JetStream, store *txn.Store, interval time.Duration, log *slog.Logger) *Collector {
	if interval <= 0 {
		interval = DefaultCollectInterval
	}
	if log == nil {
		log = slog.Default()
	}
	return &Collector{js: js, store: store, interval: interval, log: log.With("component", "consume-metrics")}
}

// Describe sends the collector's descriptors.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLagEvents, descLagMessages, descLagSeconds, descCommitted, descEpoch,
		descHead, descMembers, descOwned, descUnowned, descExact, descErrors} {
		ch <- d
	}
}

// Collect refreshes the status when older than the interval and sends it.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= c.interval {
		c.refresh()
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	for _, g := range c.groups {
		exact := 0.0
		if g.Exact {
			exact = 1
		}
		gauge(descHead, float64(g.Head), g.Group)
		gauge(descMembers, float64(len(g.Members)), g.Group)
		gauge(descExact, exact, g.Group)
		owned := map[string]int{}
		for _, m := range g.Members {
			owned[m] = 0
		}
		unowned := 0
		for _, p := range g.PerPartition {
			part := strconv.Itoa(p.Partition)
			gauge(descLagEvents, float64(p.LagEvents), g.Group, part)
			gauge(descLagMessages, float64(p.LagMessages), g.Group, part)
			gauge(descLagSeconds, p.LagSeconds, g.Group, part)
			gauge(descCommitted, float64(p.Seq), g.Group, part)
			gauge(descEpoch, float64(p.Epoch), g.Group, part)
			if _, live := owned[p.Owner]; live && p.Owner == p.Assigned {
				owned[p.Owner]++
			} else {
				unowned++
			}
		}
		for m, n := range owned {
			gauge(descOwned, float64(n), g.Group, m)
		}
		gauge(descUnowned, float64(unowned), g.Group)
	}
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, c.errors)
}

// refresh reads every group's status; a group that cannot be read keeps
// no series until it can (stale figures would look current).
func (c *Collector) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	c.at = time.Now()
	names, err := Groups(ctx, c.store)
	if err != nil {
		c.errors++
		c.log.Debug("list consumer groups", "err", err)
		c.groups = nil
		return
	}
	if len(names) > maxGroups {
		c.errors++
		c.log.Warn("too many consumer groups for metrics, reporting the first ones", "groups", len(names), "reported", maxGroups)
		names = names[:maxGroups]
	}
	out := make([]GroupStatus, 0, len(names))
	for _, g := range names {
		st, err := Status(ctx, c.js, c.store, g)
		if err != nil {
			c.errors++
			c.log.Debug("consumer group status", "group", g, "err", err)
			continue
		}
		out = append(out, st)
	}
	c.groups = out
}
