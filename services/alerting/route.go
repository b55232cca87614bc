package alerting

import (
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
)

// Route is a node of the routing tree, as in Alertmanager's
// dispatch/route.go: an alert goes to the first child whose matchers match
// it (and on to later ones while a match has Continue), else to this
// node's receiver. A child inherits what it leaves unset.
type Route struct {
	Receiver string   `yaml:"receiver"`
	Matchers []string `yaml:"matchers"`
	GroupBy  []string `yaml:"group_by"`
	// GroupWait, GroupInterval and RepeatInterval are nil when unset
	// (inherited); group_wait may be 0, the other two may not, as in
	// Alertmanager.
	GroupWait      *Duration `yaml:"group_wait"`
	GroupInterval  *Duration `yaml:"group_interval"`
	RepeatInterval *Duration `yaml:"repeat_interval"`
	Continue       bool      `yaml:"continue"`
	Routes         []*Route  `yaml:"routes"`

	parent   *Route
	matchers labels.Matchers
	// wait, interval and repeat are the timers in force, inherited or set.
	wait, interval, repeat time.Duration
}

// Wait, Interval and Repeat return the route's group_wait,
// group_interval and repeat_interval in force.
func (rt *Route) Wait() time.Duration     { return rt.wait }
func (rt *Route) Interval() time.Duration { return rt.interval }
func (rt *Route) Repeat() time.Duration   { return rt.repeat }

// Key is Alertmanager's route key: the matchers of the route and its
// parents, root first, joined by '/' (`{}/{team="db"}`). Group keys start
// with it.
func (rt *Route) Key() string {
	s := rt.matchers.String()
	if rt.parent != nil {
		return rt.parent.Key() + "/" + s
	}
	return s
}

// Walk visits the route and its children, depth first.
func (rt *Route) Walk(visit func(*Route)) {
	visit(rt)
	for _, ch := range rt.Routes {
		ch.Walk(visit)
	}
}

func (rt *Route) fill(parent *Route, receivers map[string]bool) error {
	rt.parent = parent
	wait, interval, repeat := DefaultGroupWait, DefaultGroupInterval, DefaultRepeatInterval
	if parent != nil {
		if rt.Receiver == "" {
			rt.Receiver = parent.Receiver
		}
		if rt.GroupBy == nil {
			rt.GroupBy = parent.GroupBy
		}
		wait, interval, repeat = parent.wait, parent.interval, parent.repeat
	}
	set := func(d *Duration, def time.Duration) time.Duration {
		if d == nil {
			return def
		}
		return d.Std()
	}
	rt.wait, rt.interval, rt.repeat = set(rt.GroupWait, wait), set(rt.GroupInterval, interval), set(rt.RepeatInterval, repeat)
	var err error
	if rt.matchers, err = parseMatchers(rt.Matchers); err != nil {
		return fmt.Errorf("route %s: %w", rt.Key(), err)
	}
	// Alertmanager sorts a route's matchers: its key does not depend on
	// the order they are written in.
	sort.Sort(rt.matchers)
	if !receivers[rt.Receiver] {
		return fmt.Errorf("route %s: unknown receiver %q", rt.Key(), rt.Receiver)
	}
	for _, ch := range rt.Routes {
		if ch == nil {
			return fmt.Errorf("route %s: empty child route", rt.Key())
		}
		if err := ch.fill(rt, receivers); err != nil {
			return err
		}
	}
	return nil
}

// match returns the routes an alert with lbls goes to, as Alertmanager's
// routing tree does.
func (rt *Route) match(lbls map[string]string) []*Route {
	if !matchAll(rt.matchers, lbls) {
		return nil
	}
	var out []*Route
	for _, ch := range rt.Routes {
		m := ch.match(lbls)
		out = append(out, m...)
		if len(m) > 0 && !ch.Continue {
			break
		}
	}
	if len(out) == 0 {
		out = []*Route{rt}
	}
	return out
}

// Receivers returns the receivers of the routes an alert with lbls goes
// to, in routing order, one per route as Alertmanager lists them.
func (rt *Route) Receivers(lbls map[string]string) []string {
	var out []string
	for _, r := range rt.match(lbls) {
		out = append(out, r.Receiver)
	}
	return out
}

// groupLabels returns the values of the route's group_by labels in lbls.
func (rt *Route) groupLabels(lbls map[string]string) map[string]string {
	gl := map[string]string{}
	for _, n := range rt.GroupBy {
		if n == "..." {
			return maps.Clone(lbls)
		}
		if v, ok := lbls[n]; ok {
			gl[n] = v
		}
	}
	return gl
}

// groupKey is Alertmanager's: the route's key and the group labels as
// Prometheus writes a label set (`{}:{alertname="A", service="api"}`).
func (rt *Route) groupKey(gl map[string]string) string {
	return rt.Key() + ":" + labelSet(gl).String()
}

func matchAll(ms labels.Matchers, lbls map[string]string) bool {
	for _, m := range ms {
		if !m.Matches(lbls[m.Name]) {
			return false
		}
	}
	return true
}

func parseMatchers(ss []string) (labels.Matchers, error) {
	var out labels.Matchers
	for _, s := range ss {
		ms, err := labels.ParseMatchers(s)
		if err != nil {
			return nil, fmt.Errorf("matcher %q: %w", s, err)
		}
		out = append(out, ms...)
	}
	return out, nil
}
