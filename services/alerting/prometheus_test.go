package alerting_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/streams"
)

// TestRealPrometheusUsesThePlatformAsItsAlertmanager runs the Debian
// package's Prometheus with a rule that always fires and the platform's
// API v2 as its Alertmanager: the alert arrives through POST
// /api/v2/alerts, is listed, and is notified on stream ALERTS.
func TestRealPrometheusUsesThePlatformAsItsAlertmanager(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("no prometheus binary (install the Debian package prometheus to run this test)")
	}
	_, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	got := notificationsOn(t, ctx, js, streams.AlertSubject("critical", "PrometheusSaysHello"))
	s, _ := start(t, ctx, nc, writeRules(t, liveRules))

	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yml")
	require.NoError(t, writeFile(rules, `groups:
  - name: platform-test
    interval: 1s
    rules:
      - alert: PrometheusSaysHello
        expr: vector(1)
        labels: {severity: critical, team: ops}
        annotations: {summary: "from a real Prometheus"}
`))
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, writeFile(cfg, fmt.Sprintf(`global: {evaluation_interval: 1s}
rule_files: [%q]
alerting:
  alertmanagers:
    - api_version: v2
      static_configs: [{targets: [%q]}]
`, rules, s.HTTPAddr())))
	port := freePort(t)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		// Its first send can come before it has found its Alertmanager,
		// and is then dropped; resend each second rather than each minute.
		"--rules.alert.resend-delay=1s")
	var out clustertest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	base := "http://" + s.HTTPAddr()
	clustertest.Eventually(t, 60*time.Second, func() error {
		resp, err := http.Get(base + "/api/v2/alerts?filter=alertname%3D%22PrometheusSaysHello%22")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var as []struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
			Status      struct {
				State string `json:"state"`
			} `json:"status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&as); err != nil {
			return err
		}
		if len(as) != 1 || as[0].Status.State != "active" || as[0].Labels["team"] != "ops" || as[0].Annotations["summary"] != "from a real Prometheus" {
			return fmt.Errorf("alerts %+v; prometheus says:\n%s", as, tail(out.String(), 1500))
		}
		return nil
	})
	// liveRules' route groups by alertname with a 500ms group wait: one
	// firing notification, however often Prometheus posts the alert again.
	clustertest.Eventually(t, 20*time.Second, func() error {
		if n := len(got()); n != 1 {
			return fmt.Errorf("%d notifications, want 1", n)
		}
		return nil
	})
	m := got()[0]
	require.Equal(t, "firing", m.Status)
	require.Len(t, m.Alerts, 1)
	require.Equal(t, "ops", m.Alerts[0].Labels["team"])
	require.NotEmpty(t, m.Alerts[0].GeneratorURL, "Prometheus links the alert to its expression")
	// Prometheus posts the alert again each second: still one notification.
	updated := func() time.Time {
		for _, a := range s.Engine().Alerts(time.Now(), alerting.AllAlerts) {
			if a.Name() == "PrometheusSaysHello" {
				return a.UpdatedAt
			}
		}
		return time.Time{}
	}
	first := updated()
	clustertest.Eventually(t, 20*time.Second, func() error {
		if !updated().After(first.Add(time.Second)) {
			return errors.New("not posted again yet")
		}
		return nil
	})
	require.Len(t, got(), 1, "posted again, notified once")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
