package alerting_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/streams"
)

const liveRules = `
evaluation_interval: 100ms
rules:
  - alert: InstanceDead
    over: members
    expr: state == "dead"
    labels: {severity: critical}
    annotations: {summary: '{{ $labels.instance }} is dead'}
route: {group_by: [alertname], group_wait: 500ms, group_interval: 500ms, repeat_interval: 1h}
`

// start runs one alerting instance on nc with rules and returns it.
func start(t *testing.T, ctx context.Context, nc *nats.Conn, rulesFile string) (*alerting.Service, chan error) {
	t.Helper()
	s, err := alerting.New(alerting.Options{Conn: nc, RulesFile: rulesFile, HTTPAddr: "127.0.0.1:0",
		HeartbeatInterval: -1, LeaseTTL: 1500 * time.Millisecond, LeaseRenew: 300 * time.Millisecond,
		Logger: clustertest.Logger()})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("alerting did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("alerting not ready in 20s")
	}
	return s, done
}

// startMany starts n instances of the alerting service on connections
// of their own, each with a context of its own: cancelling one stops
// that instance, as a crash or a shutdown would; all stop when the test
// ends.
func startMany(t *testing.T, ctx context.Context, c *cluster.Cluster, path string, n int) ([]*alerting.Service, []context.CancelFunc) {
	t.Helper()
	var svcs []*alerting.Service
	var cancels []context.CancelFunc
	for range n {
		ictx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		cancels = append(cancels, cancel)
		s, _ := start(t, ictx, clustertest.Connect(t, c), path)
		svcs = append(svcs, s)
	}
	return svcs, cancels
}

func writeRules(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "alerts.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func putMember(t *testing.T, ctx context.Context, kv jetstream.KeyValue, inst string, st membership.State) {
	t.Helper()
	b, err := json.Marshal(membership.Member{Service: "demo", Instance: inst, State: st, LastSeen: time.Now()})
	require.NoError(t, err)
	_, err = kv.Put(ctx, membership.Key("demo", inst), b)
	require.NoError(t, err)
}

// alertsOn collects every alerts.critical.InstanceDead notification
// stream ALERTS stores from now on.
func alertsOn(t *testing.T, ctx context.Context, js jetstream.JetStream) func() []alerting.WebhookMessage {
	t.Helper()
	return notificationsOn(t, ctx, js, streams.AlertSubject("critical", "InstanceDead"))
}

// notificationsOn collects every notification on subject that stream
// ALERTS stores from now on.
func notificationsOn(t *testing.T, ctx context.Context, js jetstream.JetStream, subject string) func() []alerting.WebhookMessage {
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

func TestDeadInstanceNotifiedOnceThenResolvedAndSilenced(t *testing.T) {
	c, nc, js := clustertest.Provisioned(t, 1)
	_ = c
	ctx := clustertest.Context(t, 2*time.Minute)
	members, err := js.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err)
	got := alertsOn(t, ctx, js)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, _ := start(t, rctx, nc, writeRules(t, liveRules))
	clustertest.Eventually(t, 10*time.Second, func() error {
		if !s.Active() {
			return errors.New("not active yet")
		}
		return nil
	})

	putMember(t, ctx, members, "i1", membership.Dead)
	clustertest.Eventually(t, 20*time.Second, func() error {
		if n := len(got()); n != 1 {
			return fmt.Errorf("%d notifications, want 1", n)
		}
		return nil
	})
	m := got()[0]
	require.Equal(t, "4", m.Version)
	require.Equal(t, "firing", m.Status)
	require.Len(t, m.Alerts, 1)
	require.Equal(t, "i1 is dead", m.Alerts[0].Annotations["summary"])
	require.NotEmpty(t, m.Alerts[0].Fingerprint)

	// It comes back: one resolved notification.
	putMember(t, ctx, members, "i1", membership.Alive)
	clustertest.Eventually(t, 20*time.Second, func() error {
		ms := got()
		if len(ms) != 2 || ms[1].Status != "resolved" {
			return fmt.Errorf("%d notifications, want a second, resolved one", len(ms))
		}
		return nil
	})

	// A silence posted through the API v2 mutes the next death.
	base := "http://" + s.HTTPAddr()
	body := `{"matchers":[{"name":"alertname","value":"InstanceDead","isRegex":false},{"name":"instance","value":"i2","isRegex":false}],
		"startsAt":"` + time.Now().UTC().Format(time.RFC3339) + `","endsAt":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `","createdBy":"test","comment":"maintenance"}`
	resp, err := http.Post(base+"/api/v2/silences", "application/json", bytes.NewBufferString(body))
	require.NoError(t, err)
	var created struct {
		SilenceID string `json:"silenceID"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, created.SilenceID)

	silKV, err := js.KeyValue(ctx, streams.BucketSilences)
	require.NoError(t, err)
	_, err = silKV.Get(ctx, created.SilenceID)
	require.NoError(t, err, "the silence is stored in KV SILENCES")

	putMember(t, ctx, members, "i2", membership.Dead)
	clustertest.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get(base + "/api/v2/alerts?filter=instance%3D%22i2%22")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var as []alerting.AlertStatus
		if err := json.NewDecoder(resp.Body).Decode(&as); err != nil {
			return err
		}
		if len(as) != 1 || as[0].Status.State != "suppressed" || len(as[0].Status.SilencedBy) != 1 || as[0].Status.SilencedBy[0] != created.SilenceID {
			return fmt.Errorf("alerts %+v, want i2 suppressed by %s", as, created.SilenceID)
		}
		return nil
	})
	// Another dead instance, not silenced, is in the same group: the next
	// notification lists it and not the silenced one.
	putMember(t, ctx, members, "i3", membership.Dead)
	clustertest.Eventually(t, 20*time.Second, func() error {
		ms := got()
		if len(ms) < 3 {
			return fmt.Errorf("%d notifications, want a third", len(ms))
		}
		last := ms[len(ms)-1]
		for _, a := range last.Alerts {
			if a.Labels["instance"] == "i2" && a.Status == "firing" {
				return errors.New("the silenced alert was notified")
			}
		}
		if last.Alerts[0].Labels["instance"] != "i3" {
			return fmt.Errorf("last notification %+v, want i3", last.Alerts)
		}
		return nil
	})

	// Expire the silence through the API.
	req, _ := http.NewRequest(http.MethodDelete, base+"/api/v2/silence/"+created.SilenceID, nil)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get(base + "/api/v2/silence/" + created.SilenceID)
	require.NoError(t, err)
	var sl alerting.GettableSilence
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sl))
	resp.Body.Close()
	require.Equal(t, alerting.SilenceExpired, sl.Status.State)
}

func TestReloadKeepsOldRulesOnError(t *testing.T) {
	_, nc, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	path := writeRules(t, liveRules)
	s, _ := start(t, ctx, nc, path)
	require.NoError(t, os.WriteFile(path, []byte("rules:\n  - alert: X\n    over: members\n    expr: state ==\n    labels: {severity: critical}\n"), 0o600))
	resp, err := nc.Request(streams.AlertsReloadSubject, nil, 5*time.Second)
	require.NoError(t, err)
	require.Contains(t, string(resp.Data), "line 2")
	require.Contains(t, string(resp.Data), "bad_request")
	require.Len(t, s.Engine().Config().Rules, 1, "the old rules stay")
	require.Equal(t, "InstanceDead", s.Engine().Config().Rules[0].Alert)

	// alerts.post accepts Alertmanager's JSON and refuses garbage.
	resp, err = nc.Request(streams.AlertsPostSubject, []byte(`[{"labels":{"alertname":"Ext","severity":"info"}}]`), 5*time.Second)
	require.NoError(t, err)
	require.Contains(t, string(resp.Data), `"accepted":1`)
	resp, err = nc.Request(streams.AlertsPostSubject, []byte(`[{"labels":{}}]`), 5*time.Second)
	require.NoError(t, err)
	require.Contains(t, string(resp.Data), "bad_request")
	clustertest.Eventually(t, 10*time.Second, func() error {
		for _, a := range s.Engine().Alerts(time.Now(), alerting.AllAlerts) {
			if a.Name() == "Ext" {
				return nil
			}
		}
		return errors.New("posted alert not listed yet")
	})
}

// TestPostedAlertOfAnotherSeverityIsAWarning: an alert posted with a
// severity outside the fixed set is published on alerts.warning.<name>,
// its labels unchanged, and requests to the service are not stored.
func TestPostedAlertOfAnotherSeverityIsAWarning(t *testing.T) {
	_, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	c, err := js.OrderedConsumer(ctx, streams.Alerts, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	s, _ := start(t, ctx, nc, writeRules(t, liveRules))
	clustertest.Eventually(t, 10*time.Second, func() error {
		if !s.Active() {
			return errors.New("not active yet")
		}
		return nil
	})
	resp, err := nc.Request(streams.AlertsPostSubject, []byte(`[{"labels":{"alertname":"Ext","severity":"page"}}]`), 5*time.Second)
	require.NoError(t, err)
	require.Contains(t, string(resp.Data), `"accepted":1`)
	m, err := c.Next(jetstream.FetchMaxWait(20 * time.Second))
	require.NoError(t, err, "the posted alert's notification")
	require.Equal(t, "alerts.warning.Ext", m.Subject())
	var w alerting.WebhookMessage
	require.NoError(t, json.Unmarshal(m.Data(), &w))
	require.Equal(t, "page", w.Alerts[0].Labels["severity"])
	info, err := js.Stream(ctx, streams.Alerts)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.CachedInfo().State.Msgs, "only the notification is stored, not the request")
}

// TestHandWrittenSilenceLoadsUnderItsKey: a silence record put into KV
// SILENCES by hand whose id differs from its key is loaded under its key,
// so the API finds it, lists it and expires it by the key; a record that
// does not decode is left out and the service keeps running.
func TestHandWrittenSilenceLoadsUnderItsKey(t *testing.T) {
	_, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	s, _ := start(t, ctx, nc, writeRules(t, liveRules))
	base := "http://" + s.HTTPAddr()
	silKV, err := js.KeyValue(ctx, streams.BucketSilences)
	require.NoError(t, err)

	_, err = silKV.Put(ctx, "broken", []byte(`{"id":`))
	require.NoError(t, err)
	now := time.Now().UTC()
	rec := fmt.Sprintf(`{"id":"other","matchers":[{"name":"instance","value":"i9","isRegex":false,"isEqual":true}],
		"startsAt":%q,"endsAt":%q,"createdBy":"ops","comment":"by hand","updatedAt":%q}`,
		now.Add(-time.Minute).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339), now.Format(time.RFC3339))
	_, err = silKV.Put(ctx, "by-hand", []byte(rec))
	require.NoError(t, err)

	get := func(id string) (int, alerting.GettableSilence) {
		resp, err := http.Get(base + "/api/v2/silence/" + id)
		require.NoError(t, err)
		defer resp.Body.Close()
		var sl alerting.GettableSilence
		if resp.StatusCode == http.StatusOK {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&sl))
		}
		return resp.StatusCode, sl
	}
	clustertest.Eventually(t, 10*time.Second, func() error {
		if code, _ := get("by-hand"); code != http.StatusOK {
			return fmt.Errorf("GET silence by-hand: status %d", code)
		}
		return nil
	})
	code, sl := get("by-hand")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "by-hand", sl.ID, "loaded under its key")
	require.Equal(t, alerting.SilenceActive, sl.Status.State)
	code, _ = get("other")
	require.Equal(t, http.StatusNotFound, code, "not under the id the record claims")
	code, _ = get("broken")
	require.Equal(t, http.StatusNotFound, code, "a record that does not decode is left out")

	req, _ := http.NewRequest(http.MethodDelete, base+"/api/v2/silence/by-hand", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	code, sl = get("by-hand")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, alerting.SilenceExpired, sl.Status.State)
}
