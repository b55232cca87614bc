package consume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// TestDefaultLagAlertFires runs the default ConsumerGroupLagging rule (its
// threshold and for lowered, so a test need not wait minutes) in a real
// alerting instance that reads the process's registry, where a Collector
// reports a group with one partition held back: ALERTS receives
// alerts.warning.ConsumerGroupLagging for that group and partition only.
func TestDefaultLagAlertFires(t *testing.T) {
	def, err := alerting.ParseConfig([]byte(alerting.DefaultRules))
	require.NoError(t, err)
	var rule *alerting.Rule
	for _, r := range def.Rules {
		if r.Alert == "ConsumerGroupLagging" {
			rule = r
		}
	}
	require.NotNil(t, rule, "default rules lack ConsumerGroupLagging")
	require.Equal(t, alerting.OverMetrics, rule.Over)
	require.Equal(t, "platform_consumer_lag_seconds", rule.Metric)
	require.Equal(t, "value > 60", rule.Expr)
	require.Equal(t, 2*time.Minute, rule.For.Std())

	e := newGroupEnv(t)
	ctx := clustertest.Context(t, 2*time.Minute)
	const stuck = "stuck"
	h := func(tx *txn.Tx, ev replicator.Event) error {
		if ev.Subject == streams.EventsPrefix+stuck {
			return errors.New("held back")
		}
		return count(tx, ev)
	}
	e.start(t, "alerted", "m1", h)
	e.publishPlain(t, []string{stuck}, 0, 3)

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(e.js, e.store, 100*time.Millisecond, clustertest.Logger()))
	test := map[string]any{
		"alert": rule.Alert, "over": rule.Over, "metric": rule.Metric, "value": rule.Value,
		"expr": strings.Replace(rule.Expr, "60", "0.5", 1), "labels": rule.Labels, "annotations": rule.Annotations,
	}
	body, err := yaml.Marshal(map[string]any{
		"evaluation_interval": "100ms",
		"rules":               []any{test},
		"route":               map[string]any{"group_by": []string{"alertname"}, "group_wait": "200ms", "group_interval": "500ms", "repeat_interval": "1h", "receiver": "platform"},
		"receivers":           []any{map[string]any{"name": "platform", "stream": true}},
	})
	require.NoError(t, err)
	rules := filepath.Join(t.TempDir(), "alerts.yaml")
	require.NoError(t, os.WriteFile(rules, body, 0o600))

	got := alertNotes(t, ctx, e.js, streams.AlertSubject("warning", "ConsumerGroupLagging"))
	svc, err := alerting.New(alerting.Options{Conn: clustertest.Connect(t, e.c), RulesFile: rules, Gatherer: reg,
		HeartbeatInterval: -1, LeaseTTL: 1500 * time.Millisecond, LeaseRenew: 300 * time.Millisecond,
		Logger: clustertest.Logger()})
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done })

	part := fmt.Sprint(Partition(stuck, DefaultPartitions))
	clustertest.Eventually(t, time.Minute, func() error {
		for _, n := range got() {
			for _, a := range n.Alerts {
				if a.Status == "firing" && a.Labels["group"] == "alerted" {
					if a.Labels["partition"] != part {
						return fmt.Errorf("alert for partition %s, want only %s", a.Labels["partition"], part)
					}
					return nil
				}
			}
		}
		return errors.New("no ConsumerGroupLagging notification yet")
	})
	for _, n := range got() {
		for _, a := range n.Alerts {
			require.Equal(t, part, a.Labels["partition"], "only the held-back partition lags")
			require.Contains(t, a.Annotations["summary"], "consumer group alerted partition "+part)
		}
	}
}

// alertNotes collects every notification on subject that stream ALERTS
// stores from now on.
func alertNotes(t *testing.T, ctx context.Context, js jetstream.JetStream, subject string) func() []alerting.WebhookMessage {
	t.Helper()
	c, err := js.OrderedConsumer(ctx, streams.Alerts, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	require.NoError(t, err)
	var mu sync.Mutex
	var got []alerting.WebhookMessage
	cc, err := c.Consume(func(m jetstream.Msg) {
		var w alerting.WebhookMessage
		if json.Unmarshal(m.Data(), &w) == nil && m.Subject() == subject {
			mu.Lock()
			got = append(got, w)
			mu.Unlock()
		}
	})
	require.NoError(t, err)
	t.Cleanup(cc.Stop)
	return func() []alerting.WebhookMessage {
		mu.Lock()
		defer mu.Unlock()
		return append([]alerting.WebhookMessage(nil), got...)
	}
}
