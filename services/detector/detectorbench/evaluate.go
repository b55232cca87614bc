package detectorbench

import (
	"container/heap"
	"math"
	"slices"
	"time"

	"github.com/platform/platform/services/detector"
)

// EvalOptions configure the evaluation.
type EvalOptions struct {
	// Trace sizes every generated trace (default 200 instances, 120 s,
	// 100 ms heartbeats, seed 1).
	Trace TraceOptions
	// Tick is how often every detector is evaluated (default 10 ms).
	Tick time.Duration
	// Detector are the options of ours (default detector.DefaultOptions
	// with the trace's seed): its detection settings and ProbeInterval.
	Detector *detector.Options
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

// Evaluate scores ours, a fixed timeout of three intervals and phi accrual
// with Akka's defaults on every scenario, then trains the predictor on one
// slow-deaths trace and scores it on another, held out. It fails only on
// invalid detection settings.
func Evaluate(opts EvalOptions) (Report, error) {
	opts.fill()
	rep := Report{Trace: opts.Trace}
	for _, sc := range Scenarios {
		tr := generateTrace(sc, opts.Trace)
		ours, err := newOurs(opts, len(tr.instances), nil)
		if err != nil {
			return Report{}, err
		}
		dets := []struct {
			name string
			d    simDetector
		}{
			{NameOurs, ours},
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
	p, err := evaluatePredictor(opts)
	if err != nil {
		return Report{}, err
	}
	rep.Predictor = p
	if opts.Progress != nil {
		opts.Progress()
	}
	return rep, nil
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
func evaluatePredictor(opts EvalOptions) (PredictorScore, error) {
	train := generateTrace(SlowDeaths, opts.Trace)
	learner, err := newOurs(opts, len(train.instances), nil)
	if err != nil {
		return PredictorScore{}, err
	}
	run(train, learner, opts.Tick, nil)

	heldOpts := opts
	heldOpts.Trace.Seed = opts.Trace.Seed + 7919
	held := generateTrace(SlowDeaths, heldOpts.Trace)
	model := learner.tab.Model()
	scorer, err := newOurs(heldOpts, len(held.instances), &model)
	if err != nil {
		return PredictorScore{}, err
	}

	probs := make([][]float64, len(held.instances))
	for i, in := range held.instances {
		probs[i] = make([]float64, len(in.beats))
	}
	run(held, scorer, opts.Tick, func(i, beat int) {
		probs[i][beat] = scorer.tab.Probability(scorer.keys[i])
	})

	horizon := learner.tab.Options().PredictionHorizon
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
	st := learner.tab.Stats()
	ps.TrainedPositives, ps.TrainedNegatives = st.Positives, st.Negatives
	return ps, nil
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
