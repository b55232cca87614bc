package alerting_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/streams"
)

// TestFanoutValidatesAlerts: alerts published straight to alerts.fanout,
// the subject instances hand posted alerts on with, are checked as
// alerts.post checks them. An alert without alertname and one with an
// empty label value were notified; now the message is refused and
// counted, and a valid one after them still arrives.
func TestFanoutValidatesAlerts(t *testing.T) {
	_, nc, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	reg := prometheus.NewRegistry()
	s, err := alerting.New(alerting.Options{Conn: nc, RulesFile: writeRules(t, liveRules), HTTPAddr: "127.0.0.1:0",
		HeartbeatInterval: -1, Logger: clustertest.Logger(), Registerer: reg})
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

	fanout := streams.AlertsPrefix + "fanout"
	for _, body := range []string{
		`[{"labels":{"severity":"info","job":"no-alertname"}}]`,
		`[{"labels":{"alertname":"EmptyValue","team":""}}]`,
		`[{"labels":{"alertname":"GoodButWithABadOne"}},{"labels":{}}]`,
		`[{"labels":{"alertname":"Reversed"},"startsAt":"2030-01-02T00:00:00Z","endsAt":"2030-01-01T00:00:00Z"}]`,
	} {
		require.NoError(t, nc.Publish(fanout, []byte(body)))
	}
	// One subscription delivers in order: once the valid alert is in,
	// the bad ones before it have been handled.
	require.NoError(t, nc.Publish(fanout, []byte(`[{"labels":{"alertname":"ViaFanout"}}]`)))
	clustertest.Eventually(t, 10*time.Second, func() error {
		for _, a := range s.Engine().Alerts(time.Now(), alerting.AllAlerts) {
			if a.Labels["alertname"] == "ViaFanout" {
				return nil
			}
		}
		return errors.New("the valid alert is not listed yet")
	})
	for _, a := range s.Engine().Alerts(time.Now(), alerting.AllAlerts) {
		if name := a.Labels["alertname"]; name != "ViaFanout" {
			t.Errorf("alert %v taken from alerts.fanout without validation", a.Labels)
		}
	}
	require.Equal(t, 4.0, alertingBad(t, reg, "fanout"), "refused fanout messages are counted")

	// 4 MiB of nulls would be 330 MiB of alerts once decoded: refused
	// before decoding, over HTTP and on alerts.fanout.
	nulls := []byte("[" + strings.Repeat("null,", 4<<20/5-1) + "null]")
	resp, err := http.Post("http://"+s.HTTPAddr()+"/api/v2/alerts", "application/json", bytes.NewReader(nulls))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", body)
	require.Contains(t, string(body), "MiB")
	require.NoError(t, nc.Publish(fanout, nulls))
	clustertest.Eventually(t, 10*time.Second, func() error {
		if got := alertingBad(t, reg, "fanout"); got != 5 {
			return fmt.Errorf("bad fanout messages: %v, want 5", got)
		}
		return nil
	})
}

// alertingBad returns platform_alerting_bad_input_total{reason} from reg.
func alertingBad(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "platform_alerting_bad_input_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
