package alerting

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func mustConfig(t *testing.T, y string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(y))
	require.NoError(t, err)
	return c
}

func TestRuleStates(t *testing.T) {
	c := mustConfig(t, `
rules:
  - alert: Hot
    over: heartbeats
    expr: cpu > 0.9
    for: 10s
    keep_firing_for: 5s
    value: cpu
    labels: {severity: warning}
    annotations: {summary: '{{ $labels.instance }} at {{ $value }}'}
`)
	e := NewEvaluator(c.Rules)
	cpu := 0.0
	series := func(*Rule) []Series {
		return []Series{{Labels: map[string]string{"service": "s", "instance": "i1"}, Fields: map[string]any{"cpu": cpu}}}
	}
	steps := []struct {
		at      time.Duration
		cpu     float64
		firing  bool
		pending bool
		ended   bool
	}{
		{0, 0.5, false, false, false},
		{5 * time.Second, 0.95, false, true, false},
		{10 * time.Second, 0.95, false, true, false},
		{15 * time.Second, 0.95, true, false, false}, // for passed
		{18 * time.Second, 0.2, true, false, false},  // kept firing
		{19 * time.Second, 0.95, true, false, false}, // back: still the same alert
		{23 * time.Second, 0.2, true, false, false},  // 4s since true: keep
		{24 * time.Second, 0.2, false, false, true},  // 5s: resolved
		{26 * time.Second, 0.95, false, true, false}, // pending anew, replacing the resolved one as in Prometheus
	}
	var started time.Time
	for _, st := range steps {
		cpu = st.cpu
		now := t0.Add(st.at)
		out := e.Eval(now, series)
		firing := len(out) > 0 && !out[0].Resolved(now)
		ended := len(out) > 0 && out[0].Resolved(now)
		if firing != st.firing || ended != st.ended || (len(e.Pending()) > 0) != st.pending {
			t.Fatalf("at %s: firing %v ended %v pending %d, want firing %v ended %v pending %v", st.at, firing, ended, len(e.Pending()), st.firing, st.ended, st.pending)
		}
		if firing {
			if started.IsZero() {
				started = out[0].StartsAt
			}
			require.Equal(t, started, out[0].StartsAt, "one alert across a short gap")
			require.Equal(t, "Hot", out[0].Name())
			require.Equal(t, "warning", out[0].Labels["severity"])
			require.Equal(t, "i1 at 0.95", out[0].Annotations["summary"])
		}
	}
}

func TestRuleErrorIsReportedNotFatal(t *testing.T) {
	c := mustConfig(t, `
rules:
  - alert: Bad
    over: members
    expr: phi > "x"
    labels: {severity: warning}
`)
	e := NewEvaluator(c.Rules)
	out := e.Eval(t0, func(*Rule) []Series { return []Series{{Fields: map[string]any{"phi": 1.0}}} })
	require.Empty(t, out)
	require.Contains(t, e.Errors(), "Bad")
}
