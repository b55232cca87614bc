package alerting_test

// The conformance test runs the Debian package's Alertmanager and the
// platform side by side on the same routing configuration, posts them the
// same alerts at the same moments, and compares what each webhook
// receives (count, content, order, arrival time within a tolerance) and
// what the API and amtool answer.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/alerting"
)

// hook is a webhook receiver that answers 500 to its first failFirst
// requests and records the notifications it accepts.
type hook struct {
	srv       *httptest.Server
	mu        sync.Mutex
	failFirst int
	// failing fails every request while set.
	failing  bool
	requests int
	failures int
	got      []received
}

type received struct {
	at  time.Time
	msg alerting.WebhookMessage
}

func newHook(t *testing.T, failFirst int) *hook {
	h := &hook{failFirst: failFirst}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.requests++
		if h.requests <= h.failFirst || h.failing {
			h.failures++
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		var m alerting.WebhookMessage
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.got = append(h.got, received{at: time.Now(), msg: m})
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// failed returns how many requests were answered 500.
func (h *hook) failed() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failures
}

func (h *hook) setFailing(v bool) {
	h.mu.Lock()
	h.failing = v
	h.mu.Unlock()
}

func (h *hook) received() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// side is one of the two systems under comparison.
type side struct {
	name     string
	base     string // API base URL
	hook, db *hook
	postedAt time.Time
}

func (s *side) post(t *testing.T, alerts string) {
	t.Helper()
	resp, err := http.Post(s.base+"/api/v2/alerts", "application/json", strings.NewReader(alerts))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", s.name, b)
}

func (s *side) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(s.base + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func (s *side) amtool(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("amtool")
	if err != nil {
		t.Skip("no amtool binary (install the Debian package prometheus-alertmanager)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--alertmanager.url=" + s.base}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s: amtool %s: %s", s.name, strings.Join(args, " "), stderr.String())
	return string(out)
}

const conformanceRoute = `
route:
  receiver: hook
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 3s
  routes:
    - matchers: ['team="db"']
      receiver: db
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [instance]
`

func startRealAlertmanager(t *testing.T, config string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		if bin, err = exec.LookPath("alertmanager"); err != nil {
			t.Skip("no Alertmanager binary: install the Debian package prometheus-alertmanager to run the conformance test")
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, writeFile(cfg, config))
	port := freePort(t)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+dir,
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port), "--cluster.listen-address=")
	var out clustertest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	clustertest.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s; alertmanager says:\n%s", resp.Status, tail(out.String(), 1000))
		}
		return nil
	})
	return base
}

// TestConformanceWithAlertmanager posts the same alerts to a real
// Alertmanager and to the platform, each receiver failing its first
// request, and compares the notifications and the API answers.
func TestConformanceWithAlertmanager(t *testing.T) {
	am := &side{name: "alertmanager", hook: newHook(t, 1), db: newHook(t, 1)}
	pl := &side{name: "platform", hook: newHook(t, 1), db: newHook(t, 1)}
	am.base = startRealAlertmanager(t, conformanceRoute+fmt.Sprintf(`
receivers:
  - name: hook
    webhook_configs: [{url: %q}]
  - name: db
    webhook_configs: [{url: %q}]
`, am.hook.srv.URL, am.db.srv.URL))

	_, nc, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	s, _ := start(t, ctx, nc, writeRules(t, "evaluation_interval: 100ms\n"+conformanceRoute+fmt.Sprintf(`
receivers:
  - name: hook
    webhook_urls: [%q]
  - name: db
    webhook_urls: [%q]
`, pl.hook.srv.URL, pl.db.srv.URL)))
	clustertest.Eventually(t, 10*time.Second, func() error {
		if !s.Active() {
			return errors.New("not active yet")
		}
		return nil
	})
	pl.base = "http://" + s.HTTPAddr()
	sides := []*side{am, pl}

	// Two warnings of one group; a database alert that started an hour
	// ago (its group goes out at once, to the child route); a warning
	// the database alert inhibits.
	t0 := time.Now().UTC().Truncate(time.Second)
	first := fmt.Sprintf(`[
		{"labels":{"alertname":"Grp","service":"api","instance":"a1","severity":"warning"},"annotations":{"summary":"one"},"startsAt":%[1]q},
		{"labels":{"alertname":"Grp","service":"api","instance":"a2","severity":"warning"},"annotations":{"summary":"two"},"startsAt":%[1]q},
		{"labels":{"alertname":"DBDown","service":"db","team":"db","instance":"d1","severity":"critical"},"startsAt":%[2]q},
		{"labels":{"alertname":"Warn","service":"api","instance":"d1","severity":"warning"},"startsAt":%[1]q}]`,
		t0.Format(time.RFC3339), t0.Add(-time.Hour).Format(time.RFC3339))
	for _, sd := range sides {
		sd.postedAt = time.Now()
		sd.post(t, first)
	}
	waitFor := func(what string, want func(sd *side) error) {
		t.Helper()
		clustertest.Eventually(t, 30*time.Second, func() error {
			for _, sd := range sides {
				if err := want(sd); err != nil {
					return fmt.Errorf("%s: %s: %w", sd.name, what, err)
				}
			}
			return nil
		})
	}
	atLeast := func(h func(*side) *hook, n int) func(*side) error {
		return func(sd *side) error {
			if got := len(h(sd).received()); got < n {
				return fmt.Errorf("%d notifications, want %d", got, n)
			}
			return nil
		}
	}
	hookOf := func(sd *side) *hook { return sd.hook }
	dbOf := func(sd *side) *hook { return sd.db }
	waitFor("first notifications", func(sd *side) error {
		return errors.Join(atLeast(hookOf, 1)(sd), atLeast(dbOf, 1)(sd))
	})

	// A1 resolves: told once, with A2 still firing; the repeat after
	// repeat_interval lists A2 only.
	t1 := time.Now().UTC().Truncate(time.Second)
	resolve := fmt.Sprintf(`[{"labels":{"alertname":"Grp","service":"api","instance":"a1","severity":"warning"},"annotations":{"summary":"one"},"startsAt":%q,"endsAt":%q}]`,
		t0.Format(time.RFC3339), t1.Format(time.RFC3339))
	for _, sd := range sides {
		sd.post(t, resolve)
	}
	waitFor("resolved and repeat notifications", atLeast(hookOf, 3))

	// Notifications: the same, in the same order, at about the same time.
	for _, h := range []struct {
		name string
		of   func(*side) *hook
		n    int
	}{{"hook", hookOf, 3}, {"db", dbOf, 1}} {
		ga, gp := h.of(am).received()[:h.n], h.of(pl).received()[:h.n]
		for i := range h.n {
			require.Equal(t, normalize(ga[i].msg), normalize(gp[i].msg), "receiver %s, notification %d", h.name, i+1)
			da, dp := ga[i].at.Sub(am.postedAt), gp[i].at.Sub(pl.postedAt)
			// Both retry the failed first request after a random
			// backoff of about a second: the tolerance covers it and a
			// loaded machine, and is still under group_wait +
			// group_interval, which a later flush would add.
			if diff := (da - dp).Abs(); diff > 2*time.Second {
				t.Errorf("receiver %s, notification %d: alertmanager after %v, platform after %v", h.name, i+1, da, dp)
			}
		}
		require.Equal(t, h.of(am).failed(), h.of(pl).failed(), "receiver %s: failed requests, each retried", h.name)
	}
	firstDB := dbReceived(t, pl)
	require.Equal(t, `{}/{team="db"}:{alertname="DBDown", service="db"}`, firstDB.GroupKey)
	for _, a := range pl.hook.received()[0].msg.Alerts {
		require.True(t, a.EndsAt.IsZero(), "a firing alert's endsAt is 0001-01-01T00:00:00Z")
	}

	// A silence on A2, the same on both.
	silence := fmt.Sprintf(`{"matchers":[{"name":"instance","value":"a2","isRegex":false,"isEqual":true}],"startsAt":%q,"endsAt":%q,"createdBy":"test","comment":"conformance"}`,
		time.Now().UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	for _, sd := range sides {
		resp, err := http.Post(sd.base+"/api/v2/silences", "application/json", strings.NewReader(silence))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, sd.name)
	}
	waitFor("A2 silenced", func(sd *side) error {
		_, b := sd.get(t, "/api/v2/alerts?filter="+url.QueryEscape(`instance="a2"`))
		if !strings.Contains(string(b), `"suppressed"`) {
			return fmt.Errorf("not suppressed yet: %s", b)
		}
		return nil
	})

	// API v2 answers, compared after leaving out times and ids.
	for _, q := range []string{"", "?active=false", "?silenced=false", "?inhibited=false", "?silenced=false&inhibited=false",
		"?receiver=db", "?receiver=ho.*", "?filter=" + url.QueryEscape(`alertname="Grp"`), "?filter=" + url.QueryEscape(`severity=~"warn.*"`)} {
		for _, path := range []string{"/api/v2/alerts", "/api/v2/alerts/groups"} {
			ca, ba := am.get(t, path+q)
			cp, bp := pl.get(t, path+q)
			require.Equal(t, ca, cp, "%s%s status", path, q)
			require.Equal(t, normalizeJSON(t, ba), normalizeJSON(t, bp), "%s%s", path, q)
		}
	}
	ca, _ := am.get(t, "/api/v2/alerts?filter=%7B")
	cp, _ := pl.get(t, "/api/v2/alerts?filter=%7B")
	require.Equal(t, ca, cp, "a bad filter is refused")

	// amtool.
	for _, args := range [][]string{
		{"alert", "query"},
		{"alert", "query", "-s"},
		{"alert", "query", "-i"},
		{"alert", "query", "-a", "-s", "-i"},
		{"alert", "query", "alertname=Grp"},
		{"alert", "query", "-r", "db"},
		{"-o", "extended", "alert", "query", "-s", "-i"},
		{"silence", "query", "instance=a2", "-q"},
		{"silence", "query", "instance!=a2", "-q"},
		{"config", "routes"},
	} {
		outA, outP := am.amtool(t, args...), pl.amtool(t, args...)
		if args[0] == "silence" {
			// Ids differ: compare how many each lists.
			require.Equal(t, len(strings.Fields(outA)), len(strings.Fields(outP)), "amtool %s:\n%s\n%s", strings.Join(args, " "), outA, outP)
			continue
		}
		require.Equal(t, maskTimes(outA), maskTimes(outP), "amtool %s", strings.Join(args, " "))
	}
	require.Contains(t, pl.amtool(t, "config", "show"), "receiver: hook", "amtool config show prints the routing part")
	var alerts []map[string]any
	require.NoError(t, json.Unmarshal([]byte(pl.amtool(t, "-o", "json", "alert", "query", "-a", "-s", "-i")), &alerts), "amtool decodes the alerts")
	require.Len(t, alerts, 3, "DBDown, A2 (silenced), Warn (inhibited)")
}

func dbReceived(t *testing.T, sd *side) alerting.WebhookMessage {
	t.Helper()
	got := sd.db.received()
	require.NotEmpty(t, got)
	return got[0].msg
}

// normalize leaves out of a notification what differs by design between
// the two systems: the external URL.
func normalize(m alerting.WebhookMessage) alerting.WebhookMessage {
	m.ExternalURL = ""
	return m
}

// amtoolTime is how amtool prints a time; the two sides receive the
// same alerts a few milliseconds apart, so their ends (last received
// plus resolve_timeout) may fall in different seconds.
var amtoolTime = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC`)

// maskTimes replaces the times in amtool's output by a placeholder of
// the same width, so the columns are still compared.
func maskTimes(s string) string {
	return amtoolTime.ReplaceAllString(s, "YYYY-MM-DD hh:mm:ss UTC")
}

// normalizeJSON leaves out of an API answer what differs by nature:
// times and silence ids (their number stays), and sorts alerts by
// fingerprint.
func normalizeJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(b, &v), "%s", b)
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range []string{"startsAt", "endsAt", "updatedAt", "generatorURL", "mutedBy"} {
				delete(x, k)
			}
			if ids, ok := x["silencedBy"].([]any); ok {
				x["silencedBy"] = len(ids)
			}
			for k, e := range x {
				x[k] = walk(e)
			}
			return x
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
			sort.SliceStable(x, func(i, j int) bool { return sortKey(x[i]) < sortKey(x[j]) })
			return x
		}
		return v
	}
	out, err := json.MarshalIndent(walk(v), "", " ")
	require.NoError(t, err)
	return string(out)
}

func sortKey(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Sprint(v)
	}
	if fp, ok := m["fingerprint"].(string); ok {
		return fp
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprint(k, m[k]))
	}
	return strings.Join(parts, ",")
}
