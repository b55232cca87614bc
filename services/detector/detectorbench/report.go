package detectorbench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/platform/platform/bench"
)

// Score is one detector configuration's result over a set of traces,
// for one class of instances or all.
type Score struct {
	Detector string `json:"detector"`
	Config   string `json:"config"`
	// Traces names the traces scored: training, held-out, a recording.
	Traces string `json:"traces"`
	// Class is the class of instances scored; empty for all.
	Class Class `json:"class,omitempty"`
	// Kind limits the deaths scored to crashes (the process's connection
	// closes) or lost hosts (it goes silent); empty for both.
	Kind string `json:"kind,omitempty"`
	// Deaths is how many process deaths the traces have; Detected how many
	// were declared dead before the trace ended.
	Deaths   int `json:"deaths"`
	Detected int `json:"detected"`
	// P50MS, P95MS and P99MS are the time from a death to the dead
	// verdict; a death never declared counts as infinitely late.
	P50MS float64 `json:"p50_ms"`
	P95MS float64 `json:"p95_ms"`
	P99MS float64 `json:"p99_ms"`
	// FalsePositives counts instances ever declared dead while their
	// process ran; FalseVerdicts counts those verdicts, and
	// FalsePer1kHours is them per 1,000 instance-hours observed.
	FalsePositives  int     `json:"false_positive_instances"`
	FalseVerdicts   int     `json:"false_verdicts"`
	FalsePer1kHours float64 `json:"false_per_1000_instance_hours"`
	// WarmUpFalse counts false verdicts in the first 30 s of each trace,
	// apart from the rest (all classes together).
	WarmUpFalse   int     `json:"warm_up_false_verdicts"`
	InstanceHours float64 `json:"instance_hours"`
	// Heartbeats is how many heartbeats the traces delivered.
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
	Trace TraceOptions `json:"trace"`
	// Train and Held are how many generated traces tuned the baselines
	// and how many held-out ones scored everyone.
	Train int `json:"training_traces"`
	Held  int `json:"held_out_traces"`
	// Sweep is every configuration on the training traces.
	Sweep []Score `json:"sweep"`
	// Points is every configuration on the held-out traces (the plot).
	Points []Score `json:"points"`
	// Scores are ours and each baseline's best configuration on the
	// held-out traces: all pooled, the generated ones by class, and each
	// recording.
	Scores    []Score        `json:"scores"`
	Predictor PredictorScore `json:"predictor"`
}

// Detector names in reports.
const (
	NameOurs  = "ours"
	NameFixed = "fixed"
	NamePhi   = "phi-akka"
)

func ms(x float64) string {
	if math.IsInf(x, 1) {
		return "never"
	}
	return fmt.Sprintf("%.0f", x)
}

// WriteTable prints the evaluation: each baseline's chosen configuration,
// then everyone on the held-out traces side by side.
func (r Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "detector evaluation: mixed fleets of %d instances, %s per trace, %s heartbeats; baselines tuned on %d training traces, everyone scored on %d held-out ones (seed %d)\n",
		r.Trace.Instances, r.Trace.Duration, r.Trace.Interval, r.Train, r.Held, r.Trace.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "traces\tclass\tdetector\tconfiguration\tdeaths\tdetected\tp50 ms\tp99 ms\tfalse+ instances\tfalse+ /1000 h\twarm-up false+\t")
	for _, s := range r.Scores {
		class := string(s.Class)
		if s.Kind != "" {
			class = s.Kind + " deaths"
		}
		if class == "" {
			class = "all"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%.0f\t%d\t\n", s.Traces, class, s.Detector, s.Config,
			s.Deaths, s.Detected, ms(s.P50MS), ms(s.P99MS), s.FalsePositives, s.FalsePer1kHours, s.WarmUpFalse)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	r.writeVerdict(w)
	p := r.Predictor
	_, err := fmt.Fprintf(w, "predictor (held-out slow-deaths trace): ROC AUC %.3f; lead before death P50 %.0f, P10 %.0f heartbeats; %.0f%% of %d slow deaths warned >= 10 heartbeats ahead; healthy heartbeats alarmed %.2f%%; trained on %d positive, %d negative examples\n",
		p.AUC, p.LeadP50, p.LeadP10, 100*p.Lead10, p.SlowDeaths, 100*p.HealthyAlarm, p.TrainedPositives, p.TrainedNegatives)
	return err
}

// find returns the held-out score of detector for class and kind.
func (r Report) find(traces, detector string, class Class, kind string) (Score, bool) {
	for _, s := range r.Scores {
		if s.Traces == traces && s.Detector == detector && s.Class == class && s.Kind == kind {
			return s, true
		}
	}
	return Score{}, false
}

// writeVerdict compares ours with each baseline's chosen configuration on
// the held-out traces, in one line each.
func (r Report) writeVerdict(w io.Writer) {
	change := func(a, b float64) string {
		if math.IsInf(a, 0) || math.IsInf(b, 0) || b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%+.0f%%", 100*(a-b)/b)
	}
	traces := []string{"held-out mixed"}
	for _, sc := range r.Scores {
		if strings.HasPrefix(sc.Traces, "recorded ") && !slices.Contains(traces, sc.Traces) {
			traces = append(traces, sc.Traces)
		}
	}
	for _, tr := range traces {
		for _, base := range []string{NameFixed, NamePhi} {
			var parts []string
			for _, k := range []struct{ label, kind string }{{"all deaths", ""}, {"crashes", KindCrash}, {"lost hosts", KindHostLost}} {
				o, ok1 := r.find(tr, NameOurs, "", k.kind)
				b, ok2 := r.find(tr, base, "", k.kind)
				if !ok1 || !ok2 {
					return
				}
				parts = append(parts, fmt.Sprintf("%s P99 %s vs %s ms (%s)", k.label, ms(o.P99MS), ms(b.P99MS), change(o.P99MS, b.P99MS)))
			}
			o, _ := r.find(tr, NameOurs, "", "")
			b, _ := r.find(tr, base, "", "")
			fmt.Fprintf(w, "%s, ours vs %s (%s): %s; false positives after warm-up %d vs %d, in warm-up %d vs %d\n",
				tr, base, b.Config, strings.Join(parts, ", "), o.FalseVerdicts, b.FalseVerdicts, o.WarmUpFalse, b.WarmUpFalse)
		}
	}
}

// Results returns the report as bench rows: one per held-out score
// (events = heartbeats, percentiles = detection time), and one for the
// predictor.
func (r Report) Results() []bench.Result {
	var out []bench.Result
	for _, s := range r.Scores {
		name := "detector/" + s.Traces + "/" + s.Detector
		if s.Class != "" {
			name += "/" + string(s.Class)
		}
		if s.Kind != "" {
			name += "/" + s.Kind
		}
		secs := r.Trace.Duration.Seconds()
		out = append(out, bench.Result{
			Name:   strings.ReplaceAll(name, " ", "-"),
			Events: s.Heartbeats, Seconds: secs, EventsPerSec: float64(s.Heartbeats) / secs,
			P50MS: finite(s.P50MS), P95MS: finite(s.P95MS), P99MS: finite(s.P99MS),
			Extra: map[string]float64{
				"deaths": float64(s.Deaths), "detected": float64(s.Detected),
				"false_positives": float64(s.FalsePositives), "false_verdicts": float64(s.FalseVerdicts),
				"false_per_1000_h": s.FalsePer1kHours,
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

// finite returns x, or -1 for a death never detected (JSON has no
// infinity).
func finite(x float64) float64 {
	if math.IsInf(x, 0) {
		return -1
	}
	return x
}

// String is the table as text.
func (r Report) String() string {
	var b strings.Builder
	_ = r.WriteTable(&b)
	return b.String()
}
