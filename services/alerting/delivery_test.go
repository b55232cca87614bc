package alerting_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/streams"
)

func webhookRules(url string) string {
	return fmt.Sprintf(`evaluation_interval: 100ms
route: {receiver: hook, group_by: [alertname], group_wait: 300ms, group_interval: 1h, repeat_interval: 1h}
receivers: [{name: hook, webhook_urls: [%q]}]
`, url)
}

func nflogKeys(t *testing.T, ctx context.Context, js jetstream.JetStream) []string {
	t.Helper()
	kv, err := js.KeyValue(ctx, streams.BucketNFLog)
	require.NoError(t, err)
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	require.NoError(t, err)
	return keys
}

func waitActive(t *testing.T, s *alerting.Service) {
	t.Helper()
	clustertest.Eventually(t, 10*time.Second, func() error {
		if !s.Active() {
			return errors.New("not active yet")
		}
		return nil
	})
}

// A webhook that fails is retried with backoff within the group
// interval (here an hour): the notification arrives seconds later, not at
// repeat_interval, and the notification log is written only once it has.
func TestFailedWebhookIsRetriedAndLoggedAfterSuccess(t *testing.T) {
	_, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	h := newHook(t, 2)
	s, _ := start(t, ctx, nc, writeRules(t, webhookRules(h.srv.URL)))
	waitActive(t, s)
	resp, err := nc.Request(streams.AlertsPostSubject, []byte(`[{"labels":{"alertname":"Flaky","severity":"warning"}}]`), 5*time.Second)
	require.NoError(t, err)
	require.Contains(t, string(resp.Data), `"accepted":1`)

	clustertest.Eventually(t, 20*time.Second, func() error {
		if h.failed() < 2 {
			return fmt.Errorf("%d failed attempts so far", h.failed())
		}
		if keys := nflogKeys(t, ctx, js); len(keys) > 0 && len(h.received()) == 0 {
			return fmt.Errorf("notification log %v written before delivery", keys)
		}
		if len(h.received()) != 1 {
			return fmt.Errorf("%d notifications delivered, want 1", len(h.received()))
		}
		return nil
	})
	clustertest.Eventually(t, 10*time.Second, func() error {
		if n := len(nflogKeys(t, ctx, js)); n != 1 {
			return fmt.Errorf("%d notification log entries, want 1", n)
		}
		return nil
	})
	require.Len(t, h.received(), 1, "delivered once")
}

// An alert that resolves while the lease passes from one instance to
// another is told as resolved by the instance that takes over.
func TestResolveDuringHandoverIsNotified(t *testing.T) {
	c, _, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	h := newHook(t, 0)
	path := writeRules(t, strings.Replace(webhookRules(h.srv.URL), "group_interval: 1h", "group_interval: 300ms", 1))
	svcs, cancels := startMany(t, ctx, c, path, 2)
	clustertest.Eventually(t, 10*time.Second, func() error {
		if svcs[0].Active() == svcs[1].Active() {
			return errors.New("not exactly one active instance yet")
		}
		return nil
	})
	active, standby := 0, 1
	if svcs[1].Active() {
		active, standby = 1, 0
	}
	nc := clustertest.Connect(t, c)
	post := func(body string) {
		t.Helper()
		resp, err := nc.Request(streams.AlertsPostSubject, []byte(body), 5*time.Second)
		require.NoError(t, err)
		require.Contains(t, string(resp.Data), `"accepted":1`)
	}
	startsAt := time.Now().UTC().Format(time.RFC3339Nano)
	post(`[{"labels":{"alertname":"Handover","severity":"warning"},"startsAt":"` + startsAt + `"}]`)
	clustertest.Eventually(t, 20*time.Second, func() error {
		if n := len(h.received()); n != 1 {
			return fmt.Errorf("%d notifications, want the firing one", n)
		}
		return nil
	})

	// The alert resolves while the active instance cannot reach the
	// receiver: the log still says firing, and the standby flushes the
	// group several times meanwhile. Then the active instance stops.
	h.setFailing(true)
	post(`[{"labels":{"alertname":"Handover","severity":"warning"},"startsAt":"` + startsAt + `","endsAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}]`)
	resolvedAt := time.Now()
	clustertest.Eventually(t, 20*time.Second, func() error {
		if h.failed() < 2 || time.Since(resolvedAt) < 2*time.Second {
			return fmt.Errorf("%d failed attempts so far", h.failed())
		}
		return nil
	})
	require.False(t, svcs[standby].Active())
	cancels[active]()
	h.setFailing(false)
	clustertest.Eventually(t, 20*time.Second, func() error {
		got := h.received()
		if len(got) != 2 {
			return fmt.Errorf("%d notifications, want firing then resolved", len(got))
		}
		if got[1].msg.Status != "resolved" {
			return fmt.Errorf("second notification %q, want resolved", got[1].msg.Status)
		}
		return nil
	})
	require.True(t, svcs[standby].Active())
	_ = js
}

// alerts.list pages an answer bigger than one NATS message, and refuses
// one asked for whole with too_large and how to page, never silence.
func TestAlertsListLargerThanAMessage(t *testing.T) {
	// A stock nats-server, max_payload 1 MiB, as under --nats.
	sc := clustertest.StartStock(t, 1)
	nc, err := nats.Connect(sc.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := clustertest.Context(t, time.Minute)
	_, err = streams.Provision(ctx, js, streams.All(1), nil)
	require.NoError(t, err)
	// A receiver with no destination: this test is about listing.
	s, _ := start(t, ctx, nc, writeRules(t, "receivers: [{name: none}]\n"))
	waitActive(t, s)
	// Listed whole, the alerts take about twice what one message
	// carries.
	const total = 300
	note := strings.Repeat("x", int(nc.MaxPayload())/total)
	const batch = 50
	for first := 0; first < total; first += batch {
		var as []alerting.PostableAlert
		for i := first; i < first+batch; i++ {
			as = append(as, alerting.PostableAlert{Labels: map[string]string{"alertname": "Many", "severity": "info", "i": fmt.Sprint(i)},
				Annotations: map[string]string{"note": note}})
		}
		b, err := json.Marshal(as)
		require.NoError(t, err)
		resp, err := nc.Request(streams.AlertsPostSubject, b, 20*time.Second)
		require.NoError(t, err)
		require.Contains(t, string(resp.Data), fmt.Sprintf(`"accepted":%d`, batch))
	}
	clustertest.Eventually(t, 10*time.Second, func() error {
		if n := len(s.Engine().Alerts(time.Now(), alerting.AllAlerts)); n != total {
			return fmt.Errorf("%d alerts held", n)
		}
		return nil
	})
	resp, err := nc.Request(streams.AlertsListSubject, nil, 20*time.Second)
	require.NoError(t, err, "an answer, not a timeout")
	answer := tail(string(resp.Data), 300)
	require.Contains(t, answer, "too_large")
	require.Contains(t, answer, `page with \"limit\" and \"after\"`)

	as, err := alerting.Client{Conn: nc}.Alerts(ctx, nil)
	require.NoError(t, err)
	require.Len(t, as, total, "the client pages through every alert")
	seen := map[string]bool{}
	for _, a := range as {
		seen[a.Fingerprint] = true
	}
	require.Len(t, seen, total, "no alert twice")
}

// Silences as Alertmanager takes them: a comment is required and an
// author is not; expiring an expired silence succeeds.
func TestSilenceRulesAsAlertmanager(t *testing.T) {
	_, nc, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	s, _ := start(t, ctx, nc, writeRules(t, liveRules))
	base := "http://" + s.HTTPAddr()
	body := func(extra string) string {
		return `{"matchers":[{"name":"alertname","value":"X","isRegex":false}],"startsAt":"` + time.Now().UTC().Format(time.RFC3339) +
			`","endsAt":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"` + extra + `}`
	}
	resp, err := http.Post(base+"/api/v2/silences", "application/json", strings.NewReader(body(`,"createdBy":"me"`)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "no comment")
	resp, err = http.Post(base+"/api/v2/silences", "application/json", strings.NewReader(body(`,"comment":"why"`)))
	require.NoError(t, err)
	var created struct {
		SilenceID string `json:"silenceID"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "no author is fine")
	for range 2 {
		req, _ := http.NewRequest(http.MethodDelete, base+"/api/v2/silence/"+created.SilenceID, nil)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "expire, then expire again")
	}
}

// An alert posted over HTTP (amtool alert add) is listed as soon as the
// POST has answered, as Alertmanager lists it.
func TestPostedAlertListedAtOnce(t *testing.T) {
	_, nc, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	s, _ := start(t, ctx, nc, writeRules(t, "evaluation_interval: 1m\nreceivers: [{name: none}]\n"))
	base := "http://" + s.HTTPAddr()
	resp, err := http.Post(base+"/api/v2/alerts", "application/json", strings.NewReader(`[{"labels":{"alertname":"JustAdded","severity":"info"}}]`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get(base + "/api/v2/alerts")
	require.NoError(t, err)
	var as []alerting.AlertStatus
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&as))
	resp.Body.Close()
	require.Len(t, as, 1)
	require.Equal(t, "JustAdded", as[0].Name())
}
