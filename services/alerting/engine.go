package alerting

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
)

// DefaultResolveTimeout ends a posted alert that carries no end and is not
// posted again, as Alertmanager's resolve_timeout does.
const DefaultResolveTimeout = 5 * time.Minute

// PostableAlert is an alert as Prometheus posts it (POST /api/v2/alerts,
// alerts.post).
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// check refuses an alert Alertmanager would refuse.
func (p PostableAlert) check() error {
	if len(p.Labels) == 0 {
		return errors.New("an alert needs labels")
	}
	for k, v := range p.Labels {
		if !model.UTF8Validation.IsValidLabelName(k) || v == "" || !utf8.ValidString(v) {
			return fmt.Errorf("label %q=%q: invalid name, or a value empty or not UTF-8", k, v)
		}
	}
	// Handed on as JSON, which would replace the bytes that are not
	// UTF-8: the other instances would hold another alert.
	for k, v := range p.Annotations {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("annotation %q: not UTF-8", k)
		}
	}
	if !utf8.ValidString(p.GeneratorURL) {
		return errors.New("generatorURL: not UTF-8")
	}
	if _, ok := p.Labels[model.AlertNameLabel]; !ok {
		return errors.New("an alert needs an alertname label")
	}
	if !p.EndsAt.IsZero() && !p.StartsAt.IsZero() && p.EndsAt.Before(p.StartsAt) {
		return errors.New("endsAt is before startsAt")
	}
	if !storable(p.StartsAt) || !storable(p.EndsAt) {
		return errors.New("startsAt and endsAt must be within the years 0 to 9999")
	}
	return nil
}

// Engine is the alerting pipeline of one instance: rules evaluated over
// signals, posted alerts, inhibition and silences, and grouping. It is
// pure (time is passed in) and safe for concurrent use; the service feeds
// it and sends what it says is due.
type Engine struct {
	mu       sync.Mutex
	cfg      *Config
	signals  *Signals
	eval     *Evaluator
	disp     *Dispatcher
	inhibit  *Inhibitor
	silences *Silences
	posted   map[model.Fingerprint]Alert
	current  []Alert // rule and posted alerts of the last step
	// currentIdx indexes current by fingerprint.
	currentIdx map[model.Fingerprint]int
	holdUntil  time.Time
	evals      int
}

// NewEngine returns an engine running cfg over signals, muting by
// silences. No group flushes before start plus the longest For among the
// rules that can raise an inhibiting (source) alert, so that after a
// restart such an alert, which needs its For again, is firing before the
// alerts it inhibits are sent. Without such rules, groups flush from the
// first evaluation.
func NewEngine(cfg *Config, signals *Signals, silences *Silences, start time.Time) *Engine {
	e := &Engine{cfg: cfg, signals: signals, silences: silences, posted: map[model.Fingerprint]Alert{},
		currentIdx: map[model.Fingerprint]int{}, eval: NewEvaluator(cfg.Rules), disp: NewDispatcher(cfg.Route), inhibit: NewInhibitor(cfg.InhibitRules)}
	e.holdUntil = start.Add(SendHold(cfg))
	return e
}

// SendHold is how long after a start no notification is sent under cfg:
// the longest For among the rules whose alerts can match an inhibit
// rule's source matchers. Whether they can is decided on the labels a
// rule fixes (alertname and its own labels, which series labels never
// override); a matcher on any other label may match.
func SendHold(cfg *Config) time.Duration {
	var m time.Duration
	for _, r := range cfg.Rules {
		for _, ir := range cfg.InhibitRules {
			if mayRaise(r, ir.source) {
				m = max(m, r.For.Std())
				break
			}
		}
	}
	return m
}

// mayRaise reports whether an alert of rule r can satisfy every matcher.
func mayRaise(r *Rule, ms labels.Matchers) bool {
	for _, m := range ms {
		v, fixed := r.Labels[m.Name]
		if m.Name == model.AlertNameLabel {
			v, fixed = r.Alert, true
		}
		if fixed && !m.Matches(v) {
			return false
		}
	}
	return true
}

// Config returns the configuration in force.
func (e *Engine) Config() *Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// SetConfig replaces the configuration: rules kept keep their states;
// groups start again when the routing tree changed.
func (e *Engine) SetConfig(cfg *Config) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg = cfg
	e.eval.SetRules(cfg.Rules)
	e.disp.SetRoute(cfg.Route)
	e.inhibit.SetRules(cfg.InhibitRules)
}

// Post adds posted alerts received at now. They join their groups at
// once, so that group_wait runs from their arrival, and are listed at
// once, as Alertmanager lists an alert it has just accepted.
func (e *Engine) Post(now time.Time, alerts ...PostableAlert) {
	e.mu.Lock()
	defer e.mu.Unlock()
	accepted := make([]Alert, 0, len(alerts))
	for _, p := range alerts {
		a := Alert{Labels: p.Labels, Annotations: p.Annotations, StartsAt: p.StartsAt, EndsAt: p.EndsAt,
			GeneratorURL: p.GeneratorURL, UpdatedAt: now}
		if a.StartsAt.IsZero() {
			a.StartsAt = now
		}
		if a.EndsAt.IsZero() {
			a.EndsAt, a.Timeout = now.Add(DefaultResolveTimeout), true
		}
		fp := a.Fingerprint()
		if old, ok := e.posted[fp]; ok && !old.Resolved(now) && old.StartsAt.Before(a.StartsAt) {
			a.StartsAt = old.StartsAt // the same alert, still going
		}
		e.posted[fp] = a
		accepted = append(accepted, a)
		if i, ok := e.currentIdx[fp]; ok {
			e.current[i] = a
		} else {
			e.currentIdx[fp] = len(e.current)
			e.current = append(e.current, a)
		}
	}
	e.inhibit.Add(accepted, now)
	e.disp.Put(now, accepted...)
}

// PostedAlerts returns the number of posted alerts held (firing, or
// resolved within the retention).
func (e *Engine) PostedAlerts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.posted)
}

// Evaluate evaluates the rules at now and updates the groups.
func (e *Engine) Evaluate(now time.Time) {
	e.signals.Prune(now)
	e.mu.Lock()
	defer e.mu.Unlock()
	// Rules over the same signal (and window) share one indexed set.
	sets := map[string]*SeriesSet{}
	ruleAlerts := e.eval.Eval(now, func(r *Rule) *SeriesSet {
		k := r.Over + "\x00" + r.Window.Std().String() + "\x00" + r.Metric
		set, ok := sets[k]
		if !ok {
			set = NewSeriesSet(e.signals.Series(r, now))
			sets[k] = set
		}
		return set
	})
	all := ruleAlerts
	for fp, a := range e.posted {
		if a.Resolved(now) && now.Sub(a.EndsAt) > resolvedRetention {
			delete(e.posted, fp)
			continue
		}
		all = append(all, a)
	}
	e.current = slices.Clip(all)
	clear(e.currentIdx)
	for i := range all {
		e.currentIdx[all[i].Fingerprint()] = i
	}
	e.inhibit.Update(all, now)
	e.disp.Put(now, all...)
	e.evals++
}

// Flush returns the groups due at now (none while held after start).
func (e *Engine) Flush(now time.Time) []Due {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.evals == 0 || now.Before(e.holdUntil) {
		return nil
	}
	return e.disp.Due(now, muters{e.silences, e.inhibit})
}

// Delivered tells the engine that d was notified, or needed not be: its
// resolved alerts leave their group (Dispatcher.Delivered).
func (e *Engine) Delivered(d Due, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.disp.Delivered(d, now)
}

// Alert states of API v2.
const (
	AlertStateActive      = "active"
	AlertStateSuppressed  = "suppressed"
	AlertStateUnprocessed = "unprocessed"
)

// AlertStatus is an alert as API v2 lists it (Alertmanager's
// GettableAlert): its receivers, and its state with what mutes it.
type AlertStatus struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
	Fingerprint  string            `json:"fingerprint"`
	Receivers    []ReceiverRef     `json:"receivers"`
	Status       AlertState        `json:"status"`
}

// Name returns the alert's alertname label.
func (a *AlertStatus) Name() string { return a.Labels[model.AlertNameLabel] }

// ReceiverRef names a receiver, as API v2 does.
type ReceiverRef struct {
	Name string `json:"name"`
}

// AlertState is an alert's state and what mutes it: the ids of the
// silences, the fingerprints of the inhibiting alerts.
type AlertState struct {
	State       string   `json:"state"`
	SilencedBy  []string `json:"silencedBy"`
	InhibitedBy []string `json:"inhibitedBy"`
}

// status returns a's API status at now: e.mu held.
func (e *Engine) status(a Alert, now time.Time) AlertStatus {
	st := AlertStatus{Labels: a.Labels, Annotations: nonNil(a.Annotations), StartsAt: a.StartsAt, EndsAt: a.EndsAt,
		UpdatedAt: a.UpdatedAt, GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint().String(), Receivers: []ReceiverRef{},
		Status: AlertState{State: AlertStateActive, SilencedBy: e.silences.Silencing(a.Labels, now), InhibitedBy: []string{}}}
	if st.Status.SilencedBy == nil {
		st.Status.SilencedBy = []string{}
	}
	if fp := e.inhibit.InhibitedBy(a.Labels, now); fp != "" {
		st.Status.InhibitedBy = append(st.Status.InhibitedBy, fp)
	}
	if len(st.Status.SilencedBy) > 0 || len(st.Status.InhibitedBy) > 0 {
		st.Status.State = AlertStateSuppressed
	}
	for _, r := range e.cfg.Route.Receivers(a.Labels) {
		st.Receivers = append(st.Receivers, ReceiverRef{Name: r})
	}
	return st
}

// AlertFilter chooses alerts as API v2's filter, active, silenced,
// inhibited and receiver parameters do.
type AlertFilter struct {
	// Matchers must all match the alert's labels.
	Matchers labels.Matchers
	// Active, Silenced and Inhibited keep alerts in those states.
	Active, Silenced, Inhibited bool
	// Receiver, when set, must match one of the alert's receivers.
	Receiver *regexp.Regexp
}

// AllAlerts is the filter that keeps every alert.
var AllAlerts = AlertFilter{Active: true, Silenced: true, Inhibited: true}

func (f AlertFilter) keep(st AlertStatus) bool {
	switch {
	case !f.Active && st.Status.State == AlertStateActive,
		!f.Silenced && len(st.Status.SilencedBy) > 0,
		!f.Inhibited && len(st.Status.InhibitedBy) > 0,
		!matchAll(f.Matchers, st.Labels):
		return false
	}
	if f.Receiver == nil {
		return true
	}
	for _, r := range st.Receivers {
		if f.Receiver.MatchString(r.Name) {
			return true
		}
	}
	return false
}

// Alerts returns the alerts firing at now that f keeps, with their status,
// sorted by fingerprint. Resolved alerts are not listed, as in
// Alertmanager.
func (e *Engine) Alerts(now time.Time, f AlertFilter) []AlertStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []AlertStatus{}
	for _, a := range e.current {
		if a.Resolved(now) {
			continue
		}
		if st := e.status(a, now); f.keep(st) {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b AlertStatus) int { return strings.Compare(a.Fingerprint, b.Fingerprint) })
	return out
}

// Current returns the rule and posted alerts of the last evaluation:
// firing, and resolved within the retention.
func (e *Engine) Current() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.current)
}

// Group is an aggregation group as API v2 lists it.
type Group struct {
	Labels   map[string]string `json:"labels"`
	Receiver ReceiverRef       `json:"receiver"`
	Alerts   []AlertStatus     `json:"alerts"`
}

// Groups returns the dispatcher's groups at now with the firing alerts f
// keeps (f.Receiver chooses groups by their receiver), as GET
// /api/v2/alerts/groups does.
func (e *Engine) Groups(now time.Time, f AlertFilter) []Group {
	e.mu.Lock()
	defer e.mu.Unlock()
	var keepRoute func(*Route) bool
	if re := f.Receiver; re != nil {
		keepRoute = func(rt *Route) bool { return re.MatchString(rt.Receiver) }
	}
	f.Receiver = nil
	out := []Group{}
	for _, g := range e.disp.Groups(keepRoute, func(a Alert) bool { return !a.Resolved(now) && f.keep(e.status(a, now)) }) {
		grp := Group{Labels: g.Labels, Receiver: ReceiverRef{Name: g.Route.Receiver}}
		for _, a := range g.Alerts {
			grp.Alerts = append(grp.Alerts, e.status(a, now))
		}
		out = append(out, grp)
	}
	return out
}

// Pending returns the rule alerts waiting for their For.
func (e *Engine) Pending() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.eval.Pending()
}

// Status sums the engine up for alerts.status and GET /api/v2/status.
type Status struct {
	Rules      int               `json:"rules"`
	Firing     int               `json:"firing"`
	Pending    int               `json:"pending"`
	Groups     int               `json:"groups"`
	Silences   int               `json:"silences"`
	RuleErrors map[string]string `json:"rule_errors,omitempty"`
}

// Status returns the engine's figures at now.
func (e *Engine) Status(now time.Time) Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Status{Rules: len(e.cfg.Rules), Pending: len(e.eval.Pending()), Groups: e.disp.Len(), Silences: len(e.silences.List())}
	for _, a := range e.current {
		if !a.Resolved(now) {
			st.Firing++
		}
	}
	if errs := e.eval.Errors(); len(errs) > 0 {
		st.RuleErrors = map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(errs)) {
			st.RuleErrors[k] = errs[k].Error()
		}
	}
	return st
}
