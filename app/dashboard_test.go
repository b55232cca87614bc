package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

// dashboardExprs returns every PromQL expression of the Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../deploy/grafana/platform.json")
	require.NoError(t, err)
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	var exprs []string
	for _, p := range d.Panels {
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	return exprs
}

var metricName = regexp.MustCompile(`platform_[a-z0-9_]+`)

// seriesNames returns the sample names in a /metrics text exposition.
func seriesNames(text string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// TestDashboardMetricsExist runs the platform, gives every dashboard panel
// something to show (events in and dropped, commits and a conflict), and
// checks that every metric the dashboard queries is in /metrics; where the
// Debian prometheus package is installed, promtool checks the exposition
// and the scrape config, and a real Prometheus scrapes the platform and
// evaluates every dashboard query.
func TestDashboardMetricsExist(t *testing.T) {
	p := startApp(t, embedded(t, 3, t.TempDir()))
	nc, _ := connect(t, p.app.Cluster().ClientURLs())
	_, err := nc.Request(streams.IngestSubject("orders"), []byte(`{"id":1}`), 10*time.Second)
	require.NoError(t, err)
	require.NoError(t, nc.Publish(streams.IngestPrefix+"bad!topic", []byte("x")), "a fire-and-forget event that is dropped")
	_, err = nc.Request(streams.IngestPrefix+"bad!topic", []byte("x"), 10*time.Second)
	require.NoError(t, err, "a refused request still gets an answer")
	_, err = nc.Request("txn.commit", []byte(`{"writes":{"dash.k":"1"}}`), 10*time.Second)
	require.NoError(t, err)
	_, err = nc.Request("txn.commit", []byte(`{"reads":{"dash.k":999999},"writes":{"dash.k":"2"}}`), 10*time.Second)
	require.NoError(t, err, "a conflicting commit")

	metricsURL := "http://" + p.app.HTTPAddr() + "/metrics"
	exprs := dashboardExprs(t)
	var text string
	clustertest.Eventually(t, 30*time.Second, func() error {
		code, body := httpGet(t, metricsURL)
		if code != http.StatusOK {
			return fmt.Errorf("/metrics: status %d", code)
		}
		text = body
		have := seriesNames(body)
		var missing []string
		for _, e := range exprs {
			for _, m := range metricName.FindAllString(e, -1) {
				if !have[m] && !slices.Contains(missing, m) {
					missing = append(missing, m)
				}
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the dashboard queries metrics /metrics lacks: %v", missing)
		}
		return nil
	})

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus): skipping promtool and the real Prometheus scrape")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
	out, err = exec.Command(promtool, "check", "config", "../deploy/prometheus.yml").CombinedOutput()
	require.NoError(t, err, "promtool check config deploy/prometheus.yml:\n%s", out)

	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed: skipping the real scrape")
	}
	scrapeWithPrometheus(t, prom, p.app.HTTPAddr(), exprs)
}

// scrapeWithPrometheus runs a real Prometheus against the platform at
// target, waits until it has scraped it, then evaluates every expression.
func scrapeWithPrometheus(t *testing.T, prom, target string, exprs []string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: platform
    static_configs:
      - targets: [%q]
`, target)), 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	query := func(q string) (string, error) {
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return "", fmt.Errorf("query %q: %s", q, b)
		}
		if r.Status != "success" {
			return "", fmt.Errorf("query %q: %s", q, r.Error)
		}
		return fmt.Sprint(len(r.Data.Result)), nil
	}
	clustertest.Eventually(t, 60*time.Second, func() error {
		n, err := query(`up{job="platform"} == 1`)
		if err != nil {
			return err
		}
		if n == "0" {
			return fmt.Errorf("prometheus has not scraped the platform yet (logs: %s)", logs.String())
		}
		n, err = query(`count({__name__=~"platform_.+"})`)
		if err != nil || n == "0" {
			return fmt.Errorf("no platform series in prometheus yet (%v)", err)
		}
		return nil
	})
	for _, e := range exprs {
		_, err := query(e)
		require.NoError(t, err, "prometheus evaluates the dashboard query")
	}
}
