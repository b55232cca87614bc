package alerting

import (
	"slices"
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"
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
	series := func(*Rule) *SeriesSet {
		return NewSeriesSet([]Series{{Labels: map[string]string{"service": "s", "instance": "i1"}, Fields: map[string]any{"cpu": cpu}}})
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
	out := e.Eval(t0, func(*Rule) *SeriesSet { return NewSeriesSet([]Series{{Fields: map[string]any{"phi": 1.0}}}) })
	require.Empty(t, out)
	require.Contains(t, e.Errors(), "Bad")
}

// TestLabelSelectorsOnlyNarrow: a rule naming label values runs over the
// series that carry them, and fires for exactly the series it would fire
// for over every series.
func TestLabelSelectorsOnlyNarrow(t *testing.T) {
	tests := []struct {
		name, expr string
		sel        map[string]string
		want       []string // instances firing
	}{
		{"no selector", `cpu > 0.5`, map[string]string{}, []string{"a1", "b1"}},
		{"one label", `service == "a" && cpu > 0.5`, map[string]string{"service": "a"}, []string{"a1"}},
		{"reversed, with and", `"b" == service and cpu > 0.5`, map[string]string{"service": "b"}, []string{"b1"}},
		{"two labels", `service == "a" && instance == "a2" && cpu >= 0`, map[string]string{"service": "a", "instance": "a2"}, []string{"a2"}},
		{"or is not narrowed", `service == "a" || cpu > 0.5`, map[string]string{}, []string{"a1", "a2", "b1"}},
		{"a field compared", `state == "x" || cpu > 0.5`, map[string]string{}, []string{"a1", "b1"}},
		{"two values of one label", `service == "a" && service == "b"`, map[string]string{"service": "\x00never"}, nil},
	}
	series := []Series{
		{Labels: map[string]string{"service": "a", "instance": "a1"}, Fields: map[string]any{"cpu": 0.9}},
		{Labels: map[string]string{"service": "a", "instance": "a2"}, Fields: map[string]any{"cpu": 0.1}},
		{Labels: map[string]string{"service": "b", "instance": "b1"}, Fields: map[string]any{"cpu": 0.9}},
		{Labels: map[string]string{"service": "b", "instance": "b2"}, Fields: map[string]any{"cpu": 0.1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustConfig(t, "rules:\n  - alert: A\n    over: heartbeats\n    expr: '"+tt.expr+"'\n    labels: {severity: info}\n")
			require.Equal(t, tt.sel, c.Rules[0].selectors)
			out := NewEvaluator(c.Rules).Eval(t0, func(*Rule) *SeriesSet { return NewSeriesSet(series) })
			var got []string
			for _, a := range out {
				got = append(got, a.Labels["instance"])
			}
			slices.Sort(got)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestSelectorsSameAnswers: a rule run through the label index (and
// without the comparisons the index guarantees) fires for exactly the
// series its whole expression holds on, also where a field shadows the
// label or the label is missing, and fails where the expression fails.
func TestSelectorsSameAnswers(t *testing.T) {
	series := []Series{
		{Labels: map[string]string{"service": "a", "instance": "a1"}, Fields: map[string]any{"cpu": 0.9}},
		{Labels: map[string]string{"service": "a", "instance": "a2"}, Fields: map[string]any{"cpu": 0.1}},
		{Labels: map[string]string{"service": "b", "instance": "b1"}, Fields: map[string]any{"cpu": 0.9}},
		{Labels: map[string]string{"instance": "n1"}, Fields: map[string]any{"cpu": 0.9, "service": "a"}},
		{Labels: map[string]string{"service": "a", "instance": "s1"}, Fields: map[string]any{"cpu": 0.9, "service": "b"}},
		{Labels: map[string]string{"service": "b", "instance": "s2"}, Fields: map[string]any{"cpu": 0.9, "service": "a"}},
	}
	exprs := []string{
		`service == "a" && cpu > 0.5`,
		`cpu > 0.5 and "a" == service`,
		`service == "a" && (service == "a" || cpu > 2) && cpu > 0.5`,
		`service == "a" && instance == "a1"`,
		`service == "a" && service == "b"`,
		`service == "a" && cpu > "x"`,
		`service == "a" && service != "a"`,
	}
	for _, ex := range exprs {
		t.Run(ex, func(t *testing.T) {
			c := mustConfig(t, "rules:\n  - alert: A\n    over: members\n    expr: '"+ex+"'\n    labels: {severity: info}\n")
			r := c.Rules[0]
			require.Nil(t, r.typed, "runs over maps")
			e := NewEvaluator(c.Rules)
			out := e.Eval(t0, func(*Rule) *SeriesSet { return NewSeriesSet(series) })
			var got []string
			for _, a := range out {
				got = append(got, a.Labels["instance"])
			}
			slices.Sort(got)
			set := NewSeriesSet(series)
			var want []string
			failed := false
			var m vm.VM
			for i, s := range series {
				ok, _, err := r.eval(&m, r.programs.full, set.env(i), &series[i])
				failed = failed || err != nil
				if ok {
					want = append(want, s.Labels["instance"])
				}
			}
			slices.Sort(want)
			require.Equal(t, want, got)
			require.Equal(t, failed, e.Errors()["A"] != nil, "errors: %v", e.Errors())
		})
	}
}
