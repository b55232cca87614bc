package detectorbench

import (
	"container/heap"
	"fmt"
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
	// Train is how many generated mixed traces the baselines are tuned on
	// (default 2, seeds Seed, Seed+1, ...); Held how many held-out ones
	// every detector is scored on (default 2, seeds from Seed+1000).
	Train, Held int
	// Recordings are replayed traces of real heartbeat timing, scored
	// with the held-out traces (see Record and ReadRecording).
	Recordings []*Recording
	// Tick is how often every detector is evaluated (default 10 ms).
	Tick time.Duration
	// Detector are the options of ours (default detector.DefaultOptions
	// with the trace's seed): its detection settings and ProbeInterval.
	Detector *detector.Options
	// Progress, when set, is called after each trace is played.
	Progress func()
}

func (o *EvalOptions) setDefaults() {
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
	if o.Train == 0 {
		o.Train = 2
	}
	if o.Held == 0 {
		o.Held = 2
	}
	if o.Tick == 0 {
		o.Tick = 10 * time.Millisecond
	}
}

// Steps returns how many times Evaluate calls Progress.
func (o EvalOptions) Steps() int {
	o.setDefaults()
	return o.Train + o.Held + len(o.Recordings) + 1
}

// candidate is one detector configuration.
type candidate struct {
	name, config string
	make         func(tr *trace) (simDetector, error)
}

// candidates returns ours with its defaults and every configuration of
// the baselines the sweep tries: fixed timeouts from 2 to 40 intervals,
// and Akka's phi accrual scaled to the interval over thresholds and
// acceptable pauses.
func candidates(opts EvalOptions) []candidate {
	out := []candidate{{name: NameOurs, config: "defaults", make: func(tr *trace) (simDetector, error) {
		o := opts
		o.Trace = tr.opts
		return newOurs(o, len(tr.instances), nil)
	}}}
	for _, k := range []float64{2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 20, 22, 25, 28, 30, 32, 35, 40} {
		out = append(out, candidate{name: NameFixed, config: fmt.Sprintf("timeout %g intervals", k),
			make: func(tr *trace) (simDetector, error) {
				return newFixed(time.Duration(k*float64(tr.opts.Interval)), len(tr.instances)), nil
			}})
	}
	for _, th := range []float64{1, 3, 8, 12, 16} {
		for _, p := range []float64{0, 1, 2, 3, 4, 6, 8, 10, 12, 15, 18, 20, 22, 25, 28, 30, 35} {
			cfg := akkaConfig{threshold: th, pause: p, minStdDev: 0.1, windowLength: 1000}
			out = append(out, candidate{name: NamePhi, config: fmt.Sprintf("phi %g, pause %g intervals", th, p),
				make: func(tr *trace) (simDetector, error) {
					return newAkka(cfg, tr.opts.Interval, len(tr.instances)), nil
				}})
		}
	}
	return out
}

// Evaluate tunes each baseline on training traces, then scores ours (its
// defaults), each baseline's best configuration and every other
// configuration on held-out traces, generated and recorded; last it
// trains the predictor on one slow-deaths trace and scores it on
// another. The best configuration of a baseline is the one with the
// lowest detection P99 among those with no false positive on the
// training traces (the fewest false positives if none has none). It
// fails only on invalid detection settings.
func Evaluate(opts EvalOptions) (Report, error) {
	opts.setDefaults()
	cands := candidates(opts)
	rep := Report{Trace: opts.Trace, Train: opts.Train, Held: opts.Held}
	// outs[c][k]: candidate c on trace k; training traces first.
	outs := make([][]outcome, len(cands))
	var traces []*trace
	for k := range opts.Train {
		t := opts.Trace
		t.Seed += uint64(k)
		traces = append(traces, generateMixed(t))
	}
	for k := range opts.Held {
		t := opts.Trace
		t.Seed += 1000 + uint64(k)
		traces = append(traces, generateMixed(t))
	}
	for _, r := range opts.Recordings {
		traces = append(traces, r.trace())
	}
	for _, tr := range traces {
		for c, cand := range cands {
			d, err := cand.make(tr)
			if err != nil {
				return Report{}, err
			}
			outs[c] = append(outs[c], play(tr, d, opts.Tick, nil))
		}
		if opts.Progress != nil {
			opts.Progress()
		}
	}
	train := func(c int) []outcome { return outs[c][:opts.Train] }
	heldMixed := func(c int) []outcome { return outs[c][opts.Train : opts.Train+opts.Held] }
	held := func(c int) []outcome { return outs[c][opts.Train:] }

	best := map[string]int{}
	for c, cand := range cands {
		s := score(train(c), "", "")
		s.Detector, s.Config, s.Traces = cand.name, cand.config, "training"
		rep.Sweep = append(rep.Sweep, s)
		h := score(held(c), "", "")
		h.Detector, h.Config, h.Traces = cand.name, cand.config, "held-out"
		rep.Points = append(rep.Points, h)
		b, ok := best[cand.name]
		if !ok || better(s, rep.Sweep[b]) {
			best[cand.name] = c
		}
	}
	for _, name := range []string{NameOurs, NameFixed, NamePhi} {
		c := best[name]
		add := func(traces string, class Class, o []outcome) {
			s := score(o, class, "")
			s.Detector, s.Config, s.Traces = name, cands[c].config, traces
			rep.Scores = append(rep.Scores, s)
		}
		add("held-out, all", "", held(c))
		add("held-out mixed", "", heldMixed(c))
		for _, kind := range []string{KindCrash, KindHostLost} {
			s := score(heldMixed(c), "", kind)
			s.Detector, s.Config, s.Traces = name, cands[c].config, "held-out mixed"
			rep.Scores = append(rep.Scores, s)
		}
		for _, cl := range classMix {
			add("held-out mixed", cl.class, heldMixed(c))
		}
		for k, r := range opts.Recordings {
			o := outs[c][opts.Train+opts.Held+k : opts.Train+opts.Held+k+1]
			add("recorded "+r.Name, "", o)
			for _, kind := range []string{KindCrash, KindHostLost} {
				s := score(o, "", kind)
				s.Detector, s.Config, s.Traces = name, cands[c].config, "recorded "+r.Name
				rep.Scores = append(rep.Scores, s)
			}
			for _, cl := range r.classes() {
				add("recorded "+r.Name, cl, o)
			}
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

// better reports whether training score a beats b: no false positive
// first, then the fewer false verdicts, then the lower P99 and P50.
func better(a, b Score) bool {
	if (a.FalseVerdicts == 0) != (b.FalseVerdicts == 0) {
		return a.FalseVerdicts == 0
	}
	if a.FalseVerdicts != b.FalseVerdicts {
		return a.FalseVerdicts < b.FalseVerdicts
	}
	if a.P99MS != b.P99MS {
		return a.P99MS < b.P99MS
	}
	return a.P50MS < b.P50MS
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

// death is one process death in a trace: its instance's class and how
// long the detector took to declare it (+Inf: never, before the trace
// ended or the instance came back).
type death struct {
	class    Class
	hostLost bool
	ms       float64
}

// outcome is one detector's raw result on one trace.
type outcome struct {
	deaths []death
	// falseVerdicts counts dead verdicts while the process ran, by
	// instance, after the warm-up; warmFalse those during it.
	falseVerdicts []int
	warmFalse     int
	classes       []Class
	hours         float64 // instance-hours observed
	heartbeats    int64
}

// warmUp is the start of every trace in which false verdicts are counted
// apart: every detector starts knowing nothing of the fleet (the
// baselines were tuned on other traces, ours learns online), and no
// instance dies in it.
const warmUp = 30 * time.Second

// play plays a trace into a detector and records what it declared.
// onBeat, when set, is called after each heartbeat is delivered.
func play(tr *trace, d simDetector, tick time.Duration, onBeat func(i, beat int)) outcome {
	n := len(tr.instances)
	out := outcome{falseVerdicts: make([]int, n), classes: make([]Class, n),
		hours: float64(n) * tr.opts.Duration.Hours()}
	q := &beatQueue{tr: tr, pos: make([]int, n)}
	for i, in := range tr.instances {
		out.classes[i] = in.class
		if len(in.beats) > 0 {
			q.idx = append(q.idx, i)
		}
	}
	heap.Init(q)
	isDead := make([]bool, n)
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
			out.heartbeats++
			if onBeat != nil {
				onBeat(i, q.pos[i])
			}
			if q.pos[i]++; q.pos[i] < len(tr.instances[i].beats) {
				heap.Fix(q, 0)
			} else {
				heap.Pop(q)
			}
		}
		d.tick(now, func(i int) probeAnswer { return tr.instances[i].probe(now) }, func(i int) {
			if isDead[i] {
				return
			}
			isDead[i] = true
			verdicts[i] = append(verdicts[i], now)
			switch {
			case !tr.instances[i].aliveAt(now):
			case now < int64(warmUp):
				out.warmFalse++
			default:
				out.falseVerdicts[i]++
			}
		})
	}
	for i, in := range tr.instances {
		for _, l := range in.lives {
			if l.end < 0 || l.end >= end {
				continue
			}
			dt := death{class: in.class, hostLost: l.hostLost, ms: math.Inf(1)}
			// The first verdict at or after the death; a verdict just
			// before it, while the process still ran, was a false one.
			for _, v := range verdicts[i] {
				if v >= l.end {
					if nxt := nextStart(in, l.end); nxt < 0 || v < nxt {
						dt.ms = float64(v-l.end) / 1e6
					}
					break
				}
			}
			out.deaths = append(out.deaths, dt)
		}
	}
	return out
}

// Kinds of death a score may be limited to.
const (
	KindCrash    = "crash"
	KindHostLost = "host lost"
)

// score sums outcomes, of instances of class only unless it is empty,
// and of deaths of kind only unless it is empty (false positives then
// count for no kind).
func score(outs []outcome, class Class, kind string) Score {
	var s Score
	var detect []float64
	for _, o := range outs {
		for _, d := range o.deaths {
			if (class != "" && d.class != class) || (kind == KindCrash && d.hostLost) || (kind == KindHostLost && !d.hostLost) {
				continue
			}
			s.Deaths++
			if !math.IsInf(d.ms, 1) {
				s.Detected++
			}
			detect = append(detect, d.ms)
		}
		for i, fv := range o.falseVerdicts {
			if kind != "" || (class != "" && o.classes[i] != class) {
				continue
			}
			s.InstanceHours += o.hours / float64(len(o.classes))
			s.FalseVerdicts += fv
			if fv > 0 {
				s.FalsePositives++
			}
		}
		if class == "" && kind == "" {
			s.Heartbeats += o.heartbeats
			s.WarmUpFalse += o.warmFalse
		}
	}
	s.Class, s.Kind = class, kind
	s.P50MS, s.P95MS, s.P99MS = percentile(detect, 50), percentile(detect, 95), percentile(detect, 99)
	if s.InstanceHours > 0 {
		s.FalsePer1kHours = 1000 * float64(s.FalseVerdicts) / s.InstanceHours
	}
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
