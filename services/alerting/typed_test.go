package alerting

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTypedSameAnswers: a heartbeat rule run over typed environments
// gives the alerts, values and errors it gives over map environments,
// and a rule the typed environment cannot express runs over maps.
func TestTypedSameAnswers(t *testing.T) {
	var envs []heartbeatEnv
	for i := range 40 {
		f := float64(i) / 40
		envs = append(envs, heartbeatEnv{Service: fmt.Sprintf("s%d", i%3), Instance: fmt.Sprintf("i%02d", i),
			CPU: f, Mem: 1 - f, LatencyMS: 150 * f, P99MS: 600 * f, ErrorRate: f / 10, RPS: 100 * f,
			InFlight: float64(i), Leaving: i%5 == 0, AgeS: f * 10})
	}
	tests := []struct {
		expr  string
		typed bool // runs over typed environments
	}{
		{`cpu > 0.5`, true},
		{`rps > 1 && p99_ms > 500`, true},
		{`service == "s1" && error_rate > 0.05`, true},
		{`"s2" == service and !leaving && in_flight >= 20`, true},
		{`cpu == 0.5 || in_flight == 7`, true},
		{`in_flight / 4 > 5 && in_flight % 2 == 0`, false}, // % needs integers: fails each run
		{`int(in_flight) % 3 == 0`, true},
		{`max(cpu, mem) > 0.8`, true},
		{`service in ["s0", "s2"] && instance matches "^i1"`, true},
		{`string(in_flight) == "12"`, true},
		{`leaving`, true},
		{`cpu + error_rate > 1.1 * 0.5 && age_s < 9`, true},
		{`let x = cpu * 2; x > 1`, true},
		{`cpu == nil`, true},
		{`cpu > "x"`, false},
		{`unknown == nil && cpu > 0.9`, false},
		{`$env.cpu > 0.9`, false},
		{`$env["rps"] > 90`, false},
		{`service.x == 1`, false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			c := mustConfig(t, fmt.Sprintf("rules:\n  - alert: A\n    over: heartbeats\n    expr: %q\n    value: in_flight\n"+
				"    labels: {severity: info}\n    annotations: {v: '{{ $value }}'}\n", tt.expr))
			require.Equal(t, tt.typed, c.Rules[0].typed != nil, "typed")
			var typed, maps []Series
			for i := range envs {
				s := envs[i].series()
				typed = append(typed, s)
				s.typed = nil
				maps = append(maps, s)
			}
			et, em := NewEvaluator(c.Rules), NewEvaluator(c.Rules)
			gotT := et.Eval(t0, func(*Rule) *SeriesSet { return NewSeriesSet(typed) })
			gotM := em.Eval(t0, func(*Rule) *SeriesSet { return NewSeriesSet(maps) })
			require.Equal(t, gotM, gotT)
			require.Equal(t, fmt.Sprint(em.Errors()), fmt.Sprint(et.Errors()))
		})
	}
}
