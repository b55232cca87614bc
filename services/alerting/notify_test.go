package alerting_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/streams"
)

// A group too large for one NATS message reaches the stream with its first
// alerts and the rest counted, and max_alerts cuts webhooks, as
// Alertmanager does; a webhook without max_alerts gets every alert.
func TestLargeGroupIsTruncatedNotLost(t *testing.T) {
	_, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)

	got := make(chan alerting.WebhookMessage, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m alerting.WebhookMessage
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- m
	}))
	defer hook.Close()

	// Each alert carries 4 KiB: the group is about 1.5 times what one
	// message of the server carries.
	total := int(nc.MaxPayload()/4096) * 3 / 2
	n := alerting.Notification{Receiver: "r", GroupKey: `{}:{alertname="Big"}`, Status: "firing",
		GroupLabels: map[string]string{"alertname": "Big"}}
	now := time.Now()
	for i := range total {
		n.Alerts = append(n.Alerts, alerting.Alert{
			Labels:      map[string]string{"alertname": "Big", "severity": "critical", "instance": fmt.Sprint(i)},
			Annotations: map[string]string{"detail": strings.Repeat("x", 4096)},
			StartsAt:    now,
		})
	}
	nf := &alerting.Notifier{JS: js, Client: hook.Client()}

	truncated, err := nf.Send(ctx, &alerting.Receiver{Name: "r", Stream: true, Webhooks: []string{hook.URL}}, n, "big-1", now)
	require.NoError(t, err)
	require.Positive(t, truncated, "the stream's message was cut")
	st, err := js.Stream(ctx, streams.Alerts)
	require.NoError(t, err)
	m, err := st.GetLastMsgForSubject(ctx, streams.AlertSubject("critical", "Big"))
	require.NoError(t, err, "the truncated notification is stored")
	var stored alerting.WebhookMessage
	require.NoError(t, json.Unmarshal(m.Data, &stored))
	require.NotEmpty(t, stored.Alerts)
	require.Equal(t, total, len(stored.Alerts)+stored.TruncatedAlerts, "every alert is either sent or counted")
	require.Equal(t, truncated, stored.TruncatedAlerts)
	require.Equal(t, "0", stored.Alerts[0].Labels["instance"], "the first alerts are kept")
	whole := <-got
	require.Len(t, whole.Alerts, total, "a webhook without max_alerts gets the whole group")
	require.Zero(t, whole.TruncatedAlerts)

	truncated, err = nf.Send(ctx, &alerting.Receiver{Name: "r", Webhooks: []string{hook.URL}, MaxAlerts: 100}, n, "big-2", now)
	require.NoError(t, err)
	require.Equal(t, total-100, truncated)
	cut := <-got
	require.Len(t, cut.Alerts, 100)
	require.Equal(t, total-100, cut.TruncatedAlerts)

	// An alert too large for a message on its own is an error that names
	// the group, and nothing half-written is stored.
	huge := alerting.Notification{Receiver: "r", GroupKey: `{}:{alertname="Huge"}`, Status: "firing", Alerts: []alerting.Alert{{
		Labels:      map[string]string{"alertname": "Huge", "severity": "critical"},
		Annotations: map[string]string{"detail": strings.Repeat("x", int(nc.MaxPayload()))}, StartsAt: now}}}
	_, err = nf.Send(ctx, &alerting.Receiver{Name: "r", Stream: true}, huge, "huge-1", now)
	require.ErrorContains(t, err, `{}:{alertname="Huge"}`)
	_, err = st.GetLastMsgForSubject(ctx, streams.AlertSubject("critical", "Huge"))
	require.ErrorIs(t, err, jetstream.ErrMsgNotFound)
}
