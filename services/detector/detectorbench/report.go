package detectorbench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/platform/platform/bench"
)

// Score is one detector's result on one trace.
type Score struct {
	Scenario Scenario `json:"scenario"`
	Detector string   `json:"detector"`
	// Deaths is how many process deaths the trace has; Detected how many
	// were declared dead before the trace ended.
	Deaths   int `json:"deaths"`
	Detected int `json:"detected"`
	// P50MS and P99MS are the time from a death to the detector's dead
	// verdict.
	P50MS float64 `json:"p50_ms"`
	P95MS float64 `json:"p95_ms"`
	P99MS float64 `json:"p99_ms"`
	// FalsePositives counts healthy instances ever declared dead while
	// their process ran; FalseVerdicts counts those verdicts.
	FalsePositives int `json:"false_positives"`
	FalseVerdicts  int `json:"false_verdicts"`
	// Heartbeats is how many heartbeats the trace delivered.
	Heartbeats int64 `json:"heartbeats"`
}

// PredictorScore is the predictor's result on a held-out trace.
type PredictorScore struct {
	// AUC is the ROC AUC of the failure probability: heartbeats within the
	// prediction horizon before a slow death against heartbeats of
	// instances that never die.
	AUC float64 `json:"auc"`
	// LeadP50 and LeadP10 are how many heartbeats before a slow death the
	// probability passed 0.5 and stayed there (median, 10th percentile).
	LeadP50 float64 `json:"lead_p50_heartbeats"`
	LeadP10 float64 `json:"lead_p10_heartbeats"`
	// Lead10 is the fraction of slow deaths with a lead of 10 or more.
	Lead10 float64 `json:"lead_ge_10_fraction"`
	// HealthyAlarm is the fraction of healthy heartbeats scored >= 0.5.
	HealthyAlarm float64 `json:"healthy_alarm_fraction"`
	// SlowDeaths is how many slow deaths the held-out trace has.
	SlowDeaths int `json:"slow_deaths"`
	// TrainedPositives and TrainedNegatives are what the model learned
	// from on the training trace.
	TrainedPositives int64 `json:"trained_positives"`
	TrainedNegatives int64 `json:"trained_negatives"`
}

// Report is the evaluation's outcome.
type Report struct {
	Trace     TraceOptions   `json:"trace"`
	Scores    []Score        `json:"scores"`
	Predictor PredictorScore `json:"predictor"`
}

// Detector names in reports.
const (
	NameOurs       = "ours"
	NameFixed      = "fixed-3x"
	NamePhiDefault = "phi-akka"
)

// WriteTable prints the evaluation side by side.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "detector evaluation: %d instances, %s per trace, %s heartbeats, seed %d\n",
		r.Trace.Instances, r.Trace.Duration, r.Trace.Interval, r.Trace.Seed)
	fmt.Fprintln(tw, "trace\tdetector\tdeaths\tdetected\tp50 ms\tp99 ms\tfalse+ instances\tfalse verdicts\t")
	for _, s := range r.Scores {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%.0f\t%d\t%d\t\n", s.Scenario, s.Detector, s.Deaths, s.Detected, s.P50MS, s.P99MS, s.FalsePositives, s.FalseVerdicts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p := r.Predictor
	_, err := fmt.Fprintf(w, "predictor (held-out slow-deaths trace): ROC AUC %.3f; lead before death P50 %.0f, P10 %.0f heartbeats; %.0f%% of %d slow deaths warned >= 10 heartbeats ahead; healthy heartbeats alarmed %.2f%%; trained on %d positive, %d negative examples\n",
		p.AUC, p.LeadP50, p.LeadP10, 100*p.Lead10, p.SlowDeaths, 100*p.HealthyAlarm, p.TrainedPositives, p.TrainedNegatives)
	return err
}

// Results returns the report as bench rows: one per trace and detector
// (events = heartbeats, percentiles = detection time), and one for the
// predictor.
func (r Report) Results() []bench.Result {
	var out []bench.Result
	for _, s := range r.Scores {
		out = append(out, bench.Result{
			Name:   "detector/" + string(s.Scenario) + "/" + s.Detector,
			Events: s.Heartbeats, Seconds: r.Trace.Duration.Seconds(),
			EventsPerSec: float64(s.Heartbeats) / r.Trace.Duration.Seconds(),
			P50MS:        s.P50MS, P95MS: s.P95MS, P99MS: s.P99MS,
			Extra: map[string]float64{
				"deaths": float64(s.Deaths), "detected": float64(s.Detected),
				"false_positives": float64(s.FalsePositives), "false_verdicts": float64(s.FalseVerdicts),
			},
		})
	}
	p := r.Predictor
	out = append(out, bench.Result{
		Name: "detector/predictor",
		Extra: map[string]float64{
			"auc": p.AUC, "lead_p50_hb": p.LeadP50, "lead_p10_hb": p.LeadP10, "lead_ge_10": p.Lead10,
			"healthy_alarm": p.HealthyAlarm, "slow_deaths": float64(p.SlowDeaths),
		},
	})
	return out
}

// String is the table as text.
func (r Report) String() string {
	var b strings.Builder
	_ = r.WriteTable(&b)
	return b.String()
}
