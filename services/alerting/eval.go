package alerting

import (
	"cmp"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/common/model"
)

// Alert is one alert, in Alertmanager's model: a label set (its identity),
// annotations, when it started and, once resolved, when it ended.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
	// UpdatedAt is when the alert was last received or evaluated.
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// Timeout says EndsAt was set by the receiver (resolve timeout), not
	// by the sender: a later update with an EndsAt wins.
	Timeout bool `json:"-"`
}

// Fingerprint identifies the alert by its labels, as Alertmanager does.
func (a *Alert) Fingerprint() model.Fingerprint { return fingerprint(a.Labels) }

func fingerprint(lbls map[string]string) model.Fingerprint {
	ls := make(model.LabelSet, len(lbls))
	for k, v := range lbls {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.Fingerprint()
}

// Resolved reports whether the alert has ended at now.
func (a *Alert) Resolved(now time.Time) bool { return !a.EndsAt.IsZero() && !a.EndsAt.After(now) }

// Name returns the alert's alertname label.
func (a *Alert) Name() string { return a.Labels[model.AlertNameLabel] }

// Series is one series of a signal at evaluation time: its labels
// (identity) and its fields, which a rule's expression reads by name
// (labels too).
type Series struct {
	Labels map[string]string
	Fields map[string]any
	// typed is the same environment as a struct (see heartbeatEnv), nil
	// where the signal has none.
	typed any
}

// State of a rule's alert.
type State string

// States of a rule's alert, as in Prometheus.
const (
	StateInactive State = "inactive"
	StatePending  State = "pending"
	StateFiring   State = "firing"
)

// resolvedRetention is how long a resolved alert is still reported, so
// the resolution reaches every receiver (Prometheus keeps 15 minutes).
const resolvedRetention = 15 * time.Minute

type ruleAlert struct {
	alert      Alert
	state      State
	activeAt   time.Time
	lastTrue   time.Time
	resolvedAt time.Time
}

// Evaluator runs rules over series and keeps each alert's state:
// inactive → pending (while For has not passed) → firing → resolved, with
// KeepFiringFor holding a firing alert through short gaps. It is pure:
// time is passed in. It is not safe for concurrent use.
type Evaluator struct {
	rules  []*Rule
	states map[string]map[model.Fingerprint]*ruleAlert // by rule key
	errs   map[string]error
}

// NewEvaluator returns an evaluator of rules.
func NewEvaluator(rules []*Rule) *Evaluator {
	e := &Evaluator{states: map[string]map[model.Fingerprint]*ruleAlert{}}
	e.SetRules(rules)
	return e
}

func ruleKey(r *Rule) string { return r.Alert + "\x00" + r.Over + "\x00" + r.Expr }

// SetRules replaces the rules; a rule kept across the change (same name,
// signal and expression) keeps its alerts' states.
func (e *Evaluator) SetRules(rules []*Rule) {
	keep := make(map[string]bool, len(rules))
	for _, r := range rules {
		keep[ruleKey(r)] = true
	}
	for k := range e.states {
		if !keep[k] {
			delete(e.states, k)
		}
	}
	e.rules = rules
	e.errs = map[string]error{}
}

// Rules returns the rules evaluated.
func (e *Evaluator) Rules() []*Rule { return e.rules }

// Errors returns the last evaluation error of each rule that failed, by
// alert name.
func (e *Evaluator) Errors() map[string]error { return maps.Clone(e.errs) }

// Eval evaluates every rule at now over the series series(rule) returns
// (only those its label selectors allow) and returns the alerts that are
// firing, plus those resolved within the
// last 15 minutes (EndsAt set). Pending alerts are not returned; Pending
// lists them.
func (e *Evaluator) Eval(now time.Time, series func(r *Rule) *SeriesSet) []Alert {
	type job struct {
		r   *Rule
		st  map[model.Fingerprint]*ruleAlert
		set *SeriesSet
		sel selection
		out []Alert
		err error
	}
	// Series and states are gathered here, one rule after another; the
	// rules then run in parallel, each on its own states.
	jobs := make([]job, len(e.rules))
	sets := map[*SeriesSet]int{}
	for i, r := range e.rules {
		key := ruleKey(r)
		st := e.states[key]
		if st == nil {
			st = map[model.Fingerprint]*ruleAlert{}
			e.states[key] = st
		}
		set := series(r)
		if _, ok := sets[set]; !ok {
			sets[set] = len(sets)
		}
		jobs[i] = job{r: r, st: st, set: set, sel: set.candidates(r.selectors)}
	}
	// Rules over the same series run one after another, while those
	// series are still in the processor's cache.
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ja, jb := &jobs[a], &jobs[b]
		return cmp.Or(cmp.Compare(sets[ja.set], sets[jb.set]), cmp.Compare(ja.sel.first(), jb.sel.first()))
	})
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Go(func() {
			var m vm.VM
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				j := &jobs[order[i]]
				j.out, j.err = evalRule(&m, j.r, j.st, j.set, j.sel, now)
			}
		})
	}
	wg.Wait()
	var out []Alert
	for _, j := range jobs {
		delete(e.errs, j.r.Alert)
		if j.err != nil {
			e.errs[j.r.Alert] = j.err
		}
		out = append(out, j.out...)
	}
	sortAlerts(out)
	return out
}

// evalRule evaluates r over the series sel selects of set at now, updating its alerts' states st, and
// returns its firing and recently resolved alerts and its last error.
func evalRule(m *vm.VM, r *Rule, st map[model.Fingerprint]*ruleAlert, set *SeriesSet, sel selection, now time.Time) ([]Alert, error) {
	var out []Alert
	var lastErr error
	seen := map[model.Fingerprint]bool{}
	// Where the index guarantees the selector, the expression without it
	// gives the same answer for less work.
	full, hit := r.programs.forSelection(sel)
	var typedFull, typedHit *vm.Program
	if r.typed != nil {
		typedFull, typedHit = r.typed.forSelection(sel)
	}
	for i, isHit := range sel.each(set.Len()) {
		s := &set.series[i]
		var env any
		var p *vm.Program
		switch {
		case typedFull != nil && s.typed != nil:
			env, p = s.typed, typedFull
			if isHit {
				p = typedHit
			}
		default:
			env, p = set.env(i), full
			if isHit {
				p = hit
			}
		}
		ok, value, err := r.eval(m, p, env, s)
		if err != nil {
			lastErr = err
			continue
		}
		if !ok {
			continue
		}
		lbls := make(map[string]string, len(s.Labels)+len(r.Labels)+1)
		maps.Copy(lbls, s.Labels)
		maps.Copy(lbls, r.Labels)
		lbls[model.AlertNameLabel] = r.Alert
		fp := fingerprint(lbls)
		seen[fp] = true
		a := st[fp]
		if a == nil || a.state == StateInactive {
			a = &ruleAlert{state: StatePending, activeAt: now}
			st[fp] = a
		}
		a.lastTrue = now
		a.alert.Labels = lbls
		a.alert.Annotations = r.expand(lbls, value)
		if a.state == StatePending && now.Sub(a.activeAt) >= r.For.Std() {
			a.state = StateFiring
			a.alert.StartsAt = now
		}
	}
	for fp, a := range st {
		if seen[fp] {
			if a.state == StateFiring {
				a.alert.EndsAt = time.Time{}
			}
		} else {
			switch a.state {
			case StatePending:
				delete(st, fp)
				continue
			case StateFiring:
				if now.Sub(a.lastTrue) >= r.KeepFiringFor.Std() {
					a.state = StateInactive
					a.resolvedAt = now
					a.alert.EndsAt = now
				}
			case StateInactive:
				if now.Sub(a.resolvedAt) >= resolvedRetention {
					delete(st, fp)
					continue
				}
			}
		}
		if a.state == StatePending {
			continue
		}
		al := a.alert
		al.UpdatedAt = now
		out = append(out, al)
	}
	return out, lastErr
}

// Pending returns the alerts whose expression holds but whose For has not
// passed yet.
func (e *Evaluator) Pending() []Alert {
	var out []Alert
	for _, st := range e.states {
		for _, a := range st {
			if a.state == StatePending {
				al := a.alert
				al.StartsAt = a.activeAt
				out = append(out, al)
			}
		}
	}
	sortAlerts(out)
	return out
}

// sortAlerts sorts by fingerprint, computing each once.
func sortAlerts(as []Alert) {
	fps := make([]model.Fingerprint, len(as))
	for i := range as {
		fps[i] = as[i].Fingerprint()
	}
	sort.Sort(byFingerprint{as, fps})
}

type byFingerprint struct {
	as  []Alert
	fps []model.Fingerprint
}

func (b byFingerprint) Len() int           { return len(b.as) }
func (b byFingerprint) Less(i, j int) bool { return b.fps[i] < b.fps[j] }
func (b byFingerprint) Swap(i, j int) {
	b.as[i], b.as[j] = b.as[j], b.as[i]
	b.fps[i], b.fps[j] = b.fps[j], b.fps[i]
}

// eval runs program p, the rule's expression or one equivalent over env,
// over series s's environment env on machine m (reused: a VM per run
// would allocate its stack each time).
func (r *Rule) eval(m *vm.VM, p *vm.Program, env any, s *Series) (bool, any, error) {
	out, err := m.Run(p, env)
	if err != nil {
		return false, nil, fmt.Errorf("rule %s (line %d): %w", r.Alert, r.line, err)
	}
	ok, _ := out.(bool)
	var value any
	if r.Value != "" {
		value = s.value(r.Value)
	}
	return ok, value, nil
}
