package detector

import (
	"container/heap"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/service"
)

// EvalOptions configure the evaluation.
type EvalOptions struct {
	// Trace sizes every generated trace (default 200 instances, 120 s,
	// 100 ms heartbeats, seed 1).
	Trace TraceOptions
	// Tick is how often every detector is evaluated (default 10 ms).
	Tick time.Duration
	// Detector are the options of ours (default DefaultOptions with the
	// trace's seed).
	Detector *Options
	// Progress, when set, is called after each trace is scored.
	Progress func()
}

func (o *EvalOptions) fill() {
	if o.Trace.Instances == 0 {
		o.Trace.Instances = 200
	}
	if o.Trace.Duration == 0 {
		o.Trace.Duration = 120 * time.Second
	}
	if o.Trace.Interval == 0 {
		o.Trace.Interval = 100 * time.Millisecond
	}
	if o.Trace.Seed == 0 {
		o.Trace.Seed = 1
	}
	if o.Tick == 0 {
		o.Tick = 10 * time.Millisecond
	}
}

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

// simDetector is what the simulation drives.
type simDetector interface {
	heartbeat(i int, now int64, l service.Load)
	rtt(i int, now int64, rtt time.Duration, up bool)
	// tick reports every instance newly declared dead.
	tick(now int64, dead func(i int))
}

// Evaluate scores ours, a fixed timeout of three intervals and phi accrual
// with Akka's defaults on every scenario, then trains the predictor on one
// slow-deaths trace and scores it on another, held out.
func Evaluate(opts EvalOptions) Report {
	opts.fill()
	rep := Report{Trace: opts.Trace}
	for _, sc := range Scenarios {
		tr := generateTrace(sc, opts.Trace)
		dets := []struct {
			name string
			d    simDetector
		}{
			{NameOurs, newOurs(opts, len(tr.instances))},
			{NameFixed, newFixed(opts.Trace.Interval, len(tr.instances))},
			{NamePhiDefault, newAkka(len(tr.instances))},
		}
		for _, d := range dets {
			s := run(tr, d.d, opts.Tick, nil)
			s.Detector = d.name
			rep.Scores = append(rep.Scores, s)
		}
		if opts.Progress != nil {
			opts.Progress()
		}
	}
	rep.Predictor = evaluatePredictor(opts)
	if opts.Progress != nil {
		opts.Progress()
	}
	return rep
}

// ours adapts the membership table to the simulation.
type ours struct {
	tab   *table
	keys  []string
	index map[string]int
	probe time.Duration
	next  []int64
}

func newOurs(opts EvalOptions, n int) *ours {
	o := DefaultOptions()
	if opts.Detector != nil {
		o = *opts.Detector
	}
	if o.Seed == 0 {
		o.Seed = opts.Trace.Seed
	}
	o.fill()
	d := &ours{tab: newTable(o, time.Unix(1_700_000_000, 0)), index: make(map[string]int, n), probe: o.ProbeInterval}
	for i := range n {
		k := "sim.i" + itoa(i)
		d.keys = append(d.keys, k)
		d.index[k] = i
	}
	d.next = make([]int64, n)
	return d
}

func (d *ours) heartbeat(i int, now int64, l service.Load) {
	d.tab.heartbeat("sim", "i"+itoa(i), l, now)
}

func (d *ours) rtt(i int, now int64, rtt time.Duration, up bool) {
	if d.probe <= 0 || now < d.next[i] {
		return
	}
	d.next[i] = now + int64(d.probe)
	if st, ok := d.tab.stateOf(d.keys[i]); !ok || st != Alive {
		return
	}
	if !up {
		// A crashed micro service answers "no responders" at once.
		d.tab.noProbe(d.keys[i], now+int64(10*time.Minute))
		return
	}
	d.tab.observeRTT(d.keys[i], rtt)
}

func (d *ours) tick(now int64, dead func(i int)) {
	res := d.tab.tick(now, true, 0)
	for _, t := range res.transitions {
		if t.State == Dead {
			dead(d.index[t.Key()])
		}
	}
}

// fixed declares an instance dead after three intervals of silence.
type fixed struct {
	timeout int64
	deadAt  []int64
	dead    []bool
}

func newFixed(interval time.Duration, n int) *fixed {
	f := &fixed{timeout: int64(3 * interval), deadAt: make([]int64, n), dead: make([]bool, n)}
	for i := range f.deadAt {
		f.deadAt[i] = math.MaxInt64
	}
	return f
}

func (f *fixed) heartbeat(i int, now int64, _ service.Load) {
	f.deadAt[i], f.dead[i] = now+f.timeout, false
}

func (f *fixed) rtt(int, int64, time.Duration, bool) {}

func (f *fixed) tick(now int64, dead func(i int)) {
	for i, at := range f.deadAt {
		if !f.dead[i] && now >= at {
			f.dead[i] = true
			dead(i)
		}
	}
}

// akka is phi accrual with Akka cluster's defaults: threshold 8, 1000
// samples, min std deviation 100 ms, acceptable heartbeat pause 3 s, first
// heartbeat estimate 1 s (history seeded with 750 and 1250 ms).
type akka struct {
	fixed
	wins []window
	last []int64
	z    float64
}

func newAkka(n int) *akka {
	a := &akka{fixed: *newFixed(0, n), wins: make([]window, n), last: make([]int64, n), z: phiZ(8)}
	return a
}

func (a *akka) heartbeat(i int, now int64, _ service.Load) {
	w := &a.wins[i]
	if w.buf == nil {
		*w = newWindow(1000)
		w.add(750)
		w.add(1250)
	} else {
		w.add(float64(now-a.last[i]) / 1e6)
	}
	a.last[i] = now
	sd := max(w.stdDev(), 100)
	a.deadAt[i] = now + int64((w.mean()+3000+a.z*sd)*1e6)
	a.dead[i] = false
}

// beatQueue merges instances' heartbeats in arrival order.
type beatQueue struct {
	tr  *trace
	pos []int
	idx []int
}

func (q *beatQueue) Len() int { return len(q.idx) }
func (q *beatQueue) Less(a, b int) bool {
	ia, ib := q.idx[a], q.idx[b]
	return q.tr.instances[ia].beats[q.pos[ia]].at < q.tr.instances[ib].beats[q.pos[ib]].at
}
func (q *beatQueue) Swap(a, b int) { q.idx[a], q.idx[b] = q.idx[b], q.idx[a] }
func (q *beatQueue) Push(x any)    { q.idx = append(q.idx, x.(int)) }
func (q *beatQueue) Pop() any {
	x := q.idx[len(q.idx)-1]
	q.idx = q.idx[:len(q.idx)-1]
	return x
}

// run plays a trace into a detector and scores it. onBeat, when set, is
// called after each heartbeat is delivered.
func run(tr *trace, d simDetector, tick time.Duration, onBeat func(i, beat int)) Score {
	s := Score{Scenario: tr.scenario}
	n := len(tr.instances)
	q := &beatQueue{tr: tr, pos: make([]int, n)}
	for i, in := range tr.instances {
		if len(in.beats) > 0 {
			q.idx = append(q.idx, i)
		}
	}
	heap.Init(q)
	isDead := make([]bool, n)
	falseInst := make([]bool, n)
	verdicts := make([][]int64, n) // times each instance was declared dead
	end := int64(tr.opts.Duration)
	for now := int64(0); now <= end; now += int64(tick) {
		for q.Len() > 0 {
			i := q.idx[0]
			b := tr.instances[i].beats[q.pos[i]]
			if b.at > now {
				break
			}
			d.heartbeat(i, b.at, b.load)
			isDead[i] = false
			s.Heartbeats++
			if onBeat != nil {
				onBeat(i, q.pos[i])
			}
			if q.pos[i]++; q.pos[i] < len(tr.instances[i].beats) {
				heap.Fix(q, 0)
			} else {
				heap.Pop(q)
			}
		}
		for i, in := range tr.instances {
			d.rtt(i, now, in.rtt(now), in.aliveAt(now))
		}
		d.tick(now, func(i int) {
			if isDead[i] {
				return
			}
			isDead[i] = true
			verdicts[i] = append(verdicts[i], now)
			if tr.instances[i].aliveAt(now) {
				falseInst[i] = true
				s.FalseVerdicts++
			}
		})
	}
	var detect []float64
	for i, in := range tr.instances {
		if falseInst[i] {
			s.FalsePositives++
		}
		for _, l := range in.lives {
			if l.end < 0 || l.end >= end {
				continue
			}
			s.Deaths++
			// The first verdict at or after the death; a verdict just
			// before it, while the process still ran, was a false one.
			for _, v := range verdicts[i] {
				if v >= l.end {
					if nxt := nextStart(in, l.end); nxt < 0 || v < nxt {
						s.Detected++
						detect = append(detect, float64(v-l.end)/1e6)
					}
					break
				}
			}
		}
	}
	s.P50MS, s.P95MS, s.P99MS = percentile(detect, 50), percentile(detect, 95), percentile(detect, 99)
	return s
}

// nextStart returns when the incarnation after the one ending at end
// starts, or -1.
func nextStart(in *simInstance, end int64) int64 {
	for _, l := range in.lives {
		if l.start >= end {
			return l.start
		}
	}
	return -1
}

// percentile is nearest-rank, as bench uses.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	idx := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(idx, len(s)-1))]
}

// evaluatePredictor trains ours on one slow-deaths trace, then freezes the
// model and scores it on a trace from another seed.
func evaluatePredictor(opts EvalOptions) PredictorScore {
	train := generateTrace(SlowDeaths, opts.Trace)
	learner := newOurs(opts, len(train.instances))
	run(train, learner, opts.Tick, nil)

	heldOpts := opts
	heldOpts.Trace.Seed = opts.Trace.Seed + 7919
	held := generateTrace(SlowDeaths, heldOpts.Trace)
	scorer := newOurs(heldOpts, len(held.instances))
	scorer.tab.opts.Learn = false
	scorer.tab.pred = learner.tab.pred

	probs := make([][]float64, len(held.instances))
	for i, in := range held.instances {
		probs[i] = make([]float64, len(in.beats))
	}
	run(held, scorer, opts.Tick, func(i, beat int) {
		probs[i][beat] = scorer.tab.probability(scorer.keys[i])
	})

	horizon := DefaultOptions().PredictionHorizon
	if opts.Detector != nil && opts.Detector.PredictionHorizon > 0 {
		horizon = opts.Detector.PredictionHorizon
	}
	var pos, neg []float64
	var leads []float64
	healthyAlarms, healthyBeats := 0, 0
	for i, in := range held.instances {
		p := probs[i]
		switch {
		case in.slow && len(in.lives) == 1 && in.lives[0].end >= 0 && len(p) > 0:
			pos = append(pos, p[max(0, len(p)-horizon):]...)
			lead := 0
			for k := len(p) - 1; k >= 0 && p[k] >= 0.5; k-- {
				lead++
			}
			leads = append(leads, float64(lead))
		case !in.slow && in.lives[0].end < 0:
			for k, x := range p {
				if k < 50 {
					continue // the instance's averages are still settling
				}
				healthyBeats++
				if x >= 0.5 {
					healthyAlarms++
				}
				if k%5 == 0 {
					neg = append(neg, x)
				}
			}
		}
	}
	ps := PredictorScore{
		AUC:        auc(pos, neg),
		LeadP50:    percentile(leads, 50),
		LeadP10:    percentile(leads, 10),
		SlowDeaths: len(leads),
	}
	ge10 := 0
	for _, l := range leads {
		if l >= 10 {
			ge10++
		}
	}
	if len(leads) > 0 {
		ps.Lead10 = float64(ge10) / float64(len(leads))
	}
	if healthyBeats > 0 {
		ps.HealthyAlarm = float64(healthyAlarms) / float64(healthyBeats)
	}
	ps.TrainedPositives, ps.TrainedNegatives = learner.tab.pred.positives, learner.tab.pred.negatives
	return ps
}

// auc is the ROC AUC by the Mann-Whitney statistic, ties counted half.
func auc(pos, neg []float64) float64 {
	if len(pos) == 0 || len(neg) == 0 {
		return math.NaN()
	}
	type sample struct {
		v   float64
		pos bool
	}
	all := make([]sample, 0, len(pos)+len(neg))
	for _, v := range pos {
		all = append(all, sample{v, true})
	}
	for _, v := range neg {
		all = append(all, sample{v, false})
	}
	slices.SortFunc(all, func(a, b sample) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	var rankSum float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // average of ranks i+1..j
		for k := i; k < j; k++ {
			if all[k].pos {
				rankSum += rank
			}
		}
		i = j
	}
	np, nn := float64(len(pos)), float64(len(neg))
	return (rankSum - np*(np+1)/2) / (np * nn)
}

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
