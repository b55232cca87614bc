package alertingbench

import (
	"fmt"
	"strings"
	"time"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/alerting"
)

// EvalOptions size the evaluation benchmark.
type EvalOptions struct {
	// Rules is the number of rules (default 1,000).
	Rules int
	// Series is the number of heartbeat series (default 10,000).
	Series int
	// Services spreads the series over this many services (default 100).
	Services int
	// Runs is the number of evaluations timed (default 20).
	Runs int
	// Scoped makes each rule name one service (service == "svc-007" &&
	// ...), as rules usually do; otherwise every rule runs over every
	// series.
	Scoped bool
}

func (o *EvalOptions) setDefaults() {
	if o.Rules <= 0 {
		o.Rules = 1000
	}
	if o.Series <= 0 {
		o.Series = 10000
	}
	if o.Services <= 0 {
		o.Services = 100
	}
	if o.Runs <= 0 {
		o.Runs = 20
	}
}

// conditions are the rule bodies the benchmark cycles through. Series
// loads step by 0.01 from 0 to 0.99 (see MeasureEval), and each condition
// holds for about 1% of the series, the loads at 0.99: an evaluation that
// finds a few alerts among many healthy series, as on most days.
var conditions = []string{
	"cpu > %.3f", "mem < 1 - %.3f", "p99_ms > 600 * %.3f && rps > 1", "error_rate > %.3f / 10",
	"latency_ms > 150 * %.3f", "in_flight > 100 * %.3f", "cpu > %.3f && mem < 0.5",
	"rps > 100 * %.3f && !leaving", "error_rate > 0.01 && p99_ms > 600 * %.3f", "cpu + error_rate > 1.1 * %.3f",
}

// EvalConfig returns the rules file of the benchmark's rules.
func EvalConfig(o EvalOptions) string {
	o.setDefaults()
	var b strings.Builder
	b.WriteString("evaluation_interval: 5s\nrules:\n")
	for i := range o.Rules {
		cond := fmt.Sprintf(conditions[i%len(conditions)], 0.981+float64(i%7)/1000)
		if o.Scoped {
			cond = fmt.Sprintf(`service == "svc-%03d" && `, i%o.Services) + cond
		}
		fmt.Fprintf(&b, "  - alert: Rule%04d\n    over: heartbeats\n    expr: '%s'\n    labels: {severity: warning}\n", i, cond)
		b.WriteString("    annotations: {summary: '{{ $labels.instance }} of {{ $labels.service }}'}\n")
	}
	b.WriteString("route: {group_by: [alertname, service]}\n")
	return b.String()
}

// MeasureEval times evaluations of o.Rules rules over o.Series heartbeat
// series on one engine: the rules, the groups and the inhibitor, as the
// service runs them each evaluation interval.
func MeasureEval(o EvalOptions) (bench.Result, error) {
	o.setDefaults()
	cfg, err := alerting.ParseConfig([]byte(EvalConfig(o)))
	if err != nil {
		return bench.Result{}, fmt.Errorf("eval bench rules: %w", err)
	}
	now := time.Now()
	sig := alerting.NewSignals()
	for i := range o.Series {
		f := float64(i%100) / 100
		sig.Heartbeat(fmt.Sprintf("svc-%03d", i%o.Services), fmt.Sprintf("inst-%05d", i), service.Load{
			CPU: f, Mem: 1 - f, LatencyMS: 150 * f, P99MS: 600 * f, ErrorRate: f / 10, RPS: 100 * f, InFlight: int64(100 * f),
		}, now)
	}
	e := alerting.NewEngine(cfg, sig, alerting.NewSilences(), now)
	var lat bench.Latencies
	start := time.Now()
	for i := range o.Runs {
		t0 := time.Now()
		e.Evaluate(now.Add(time.Duration(i) * 5 * time.Second))
		lat.Add(time.Since(t0))
	}
	elapsed := time.Since(start)
	name := "alerting eval, every rule over every series"
	if o.Scoped {
		name = "alerting eval, each rule over one service"
	}
	r := bench.Result{Name: name}
	r.Finish(int64(o.Runs), elapsed, &lat)
	st := e.Status(now)
	r.Extra = map[string]float64{"rules": float64(o.Rules), "series": float64(o.Series),
		"firing": float64(st.Firing), "mean_ms": elapsed.Seconds() * 1000 / float64(o.Runs), "target_ms": 100}
	return r, nil
}
