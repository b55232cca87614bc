package alertingbench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/streams"
)

// StormOptions size the alert storm.
type StormOptions struct {
	// Instances is how many instances die (default 10,000).
	Instances int
	// Services spreads them over this many services: the route groups by
	// alertname and service, so this is the number of groups (default 10).
	Services int
	// Spread is the time over which they die (default 10s).
	Spread time.Duration
	// GroupWait is the route's group_wait (default 30s, Alertmanager's).
	GroupWait time.Duration
	// Writers write the MEMBERS records concurrently (default 64).
	Writers int
	// Progress is called once per instance written (nil: none).
	Progress func()
	// Logger receives the alerting instance's logs (default: discarded).
	Logger *slog.Logger
}

func (o *StormOptions) setDefaults() {
	if o.Instances <= 0 {
		o.Instances = 10000
	}
	if o.Services <= 0 {
		o.Services = 10
	}
	if o.Spread <= 0 {
		o.Spread = 10 * time.Second
	}
	if o.GroupWait <= 0 {
		o.GroupWait = 30 * time.Second
	}
	if o.Writers <= 0 {
		o.Writers = 64
	}
	if o.Progress == nil {
		o.Progress = func() {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// stormRules is the default InstanceDead rule and the default route,
// with the group wait of the options.
const stormRules = `evaluation_interval: 5s
rules:
  - alert: InstanceDead
    over: members
    expr: state == "dead"
    labels: {severity: critical}
    annotations:
      summary: "{{ $labels.service }} instance {{ $labels.instance }} is dead"
    value: silent_s
route: {group_by: [alertname, service], group_wait: %s, group_interval: 5m, repeat_interval: 4h}
`

// RunStorm makes o.Instances instances die within o.Spread and counts the
// notifications on stream ALERTS. The deaths are written to KV MEMBERS as
// the detector writes them when it declares an instance dead (the
// detector itself is not driven at this scale); the time of the last
// write is the last death detected.
func RunStorm(ctx context.Context, t *target.Target, o StormOptions) (bench.Result, error) {
	o.setDefaults()
	res := bench.Result{Name: "alerting storm"}
	members, err := t.JS.KeyValue(ctx, streams.BucketMembers)
	if err != nil {
		return res, fmt.Errorf("storm: %w", err)
	}
	put := func(i int, st membership.State) error {
		m := membership.Member{Service: fmt.Sprintf("storm-%02d", i%o.Services), Instance: fmt.Sprintf("i%05d", i),
			State: st, LastSeen: time.Now()}
		b, _ := json.Marshal(m)
		_, err := members.Put(ctx, m.Key(), b)
		return err
	}
	// The instances live first.
	if err := parallel(o.Instances, o.Writers, func(i int) error { return put(i, membership.Alive) }); err != nil {
		return res, fmt.Errorf("storm: write live instances: %w", err)
	}

	dir, err := os.MkdirTemp("", "alerting-storm-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	rules := filepath.Join(dir, "alerts.yaml")
	if err := os.WriteFile(rules, fmt.Appendf(nil, stormRules, o.GroupWait), 0o600); err != nil {
		return res, err
	}
	nc, err := t.Connect()
	if err != nil {
		return res, err
	}
	defer nc.Close()
	svc, err := alerting.New(alerting.Options{Conn: nc, RulesFile: rules, HeartbeatInterval: -1, Logger: o.Logger})
	if err != nil {
		return res, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = svc.Run(sctx) }()
	if err := waitFor(ctx, 30*time.Second, func() bool { return svc.Active() }); err != nil {
		return res, fmt.Errorf("storm: alerting instance not active: %w", err)
	}

	var mu sync.Mutex
	var notes, alerts int
	var lastOut time.Time
	cons, err := t.JS.OrderedConsumer(ctx, streams.Alerts, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{streams.AlertSubject(streams.SeverityCritical, "InstanceDead")}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return res, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var w alerting.WebhookMessage
		if json.Unmarshal(m.Data(), &w) != nil {
			return
		}
		mu.Lock()
		notes++
		alerts += len(w.Alerts)
		lastOut = time.Now()
		mu.Unlock()
	})
	if err != nil {
		return res, err
	}
	defer cc.Stop()

	// The storm: instance i dies at i*Spread/Instances.
	start := time.Now()
	var last atomic.Int64
	err = parallel(o.Instances, o.Writers, func(i int) error {
		at := start.Add(time.Duration(i) * o.Spread / time.Duration(o.Instances))
		time.Sleep(time.Until(at))
		if err := put(i, membership.Dead); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		for {
			prev := last.Load()
			if now <= prev || last.CompareAndSwap(prev, now) {
				break
			}
		}
		o.Progress()
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("storm: write deaths: %w", err)
	}
	lastDeath := time.Unix(0, last.Load())
	stormTook := lastDeath.Sub(start)
	// Everything due is out by the last death + group wait + evaluation
	// interval + slack; wait that long, then count.
	deadline := lastDeath.Add(o.GroupWait + 5*time.Second + 5*time.Second)
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(time.Until(deadline)):
	}
	mu.Lock()
	defer mu.Unlock()
	res.Finish(int64(o.Instances), stormTook, nil)
	lastOutAfter := -1.0 // nothing out
	if notes > 0 {
		lastOutAfter = lastOut.Sub(lastDeath).Seconds()
	}
	res.Extra = map[string]float64{
		"notifications": float64(notes), "groups": float64(o.Services), "alerts_notified": float64(alerts),
		"last_out_after_last_death_s": lastOutAfter, "target_s": (o.GroupWait + time.Second).Seconds(),
	}
	return res, nil
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first
// error.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// waitFor polls cond until it holds or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
