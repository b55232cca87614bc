package alerting

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Notification is what a receiver is handed for one group at one flush:
// the group's firing and resolved alerts, none muted.
type Notification struct {
	// Receiver names the receiver the group's route sends to.
	Receiver string
	// GroupKey identifies the group, as Alertmanager's groupKey does.
	GroupKey string
	// GroupLabels are the values of the route's group_by labels.
	GroupLabels map[string]string
	// Alerts are the firing then the resolved alerts of the group.
	Alerts []Alert
	// Status is "firing" when any alert fires, else "resolved".
	Status string
	// Firing and Resolved are the fingerprints of the alerts sent, sorted.
	Firing, Resolved []uint64
}

// Muter says whether an alert is muted (silenced or inhibited) at now.
type Muter interface {
	Mutes(lbls map[string]string, now time.Time) bool
}

// LogEntry is what the notification log remembers of a group's last
// notification.
type LogEntry struct {
	Firing   []uint64  `json:"firing"`
	Resolved []uint64  `json:"resolved"`
	At       time.Time `json:"at"`
}

// NeedsUpdate decides, as Alertmanager does, whether a flush with these
// firing and resolved fingerprints must notify, given the previous entry
// (nil: never notified): a new firing alert, a newly resolved one, or the
// repeat interval passed while alerts fire.
func NeedsUpdate(prev *LogEntry, firing, resolved []uint64, now time.Time, repeat time.Duration) bool {
	if prev == nil {
		return len(firing) > 0
	}
	if !subset(firing, prev.Firing) {
		return true
	}
	// Only resolutions of alerts told as firing are news.
	var told []uint64
	for _, fp := range resolved {
		if _, ok := slices.BinarySearch(prev.Firing, fp); ok {
			told = append(told, fp)
		}
	}
	if !subset(told, prev.Resolved) {
		return true
	}
	if len(firing) == 0 {
		return false // nothing fires and every resolution was told
	}
	return now.Sub(prev.At) >= repeat
}

func subset(a, b []uint64) bool {
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			return false
		}
	}
	return true
}

type group struct {
	route  *Route
	key    string
	labels map[string]string
	alerts map[model.Fingerprint]Alert
	// nextFlush is when the group flushes next: group_wait after its
	// first alert, then every group_interval.
	nextFlush time.Time
	flushed   bool
}

// groupID tells groups apart: two routes may give the same group key, as
// in Alertmanager.
type groupID struct {
	route *Route
	key   string
}

// Dispatcher groups alerts by route and group_by labels and decides when
// each group flushes: group_wait after its first alert arrives (at once
// if the alert started longer ago than that), then every group_interval.
// Whether a flush notifies is the notification log's decision
// (NeedsUpdate); a resolved alert leaves its group only once its
// resolution has been told (Delivered), so that it is told once, and
// told by whichever instance sends next. It is pure: time is passed in.
// It is not safe for concurrent use.
type Dispatcher struct {
	route  *Route
	groups map[groupID]*group
}

// NewDispatcher returns a dispatcher routing through route.
func NewDispatcher(route *Route) *Dispatcher {
	return &Dispatcher{route: route, groups: map[groupID]*group{}}
}

// SetRoute replaces the routing tree; groups of routes that no longer
// exist flush no more.
func (d *Dispatcher) SetRoute(route *Route) {
	d.route = route
	d.groups = map[groupID]*group{}
}

// Len returns the number of groups held.
func (d *Dispatcher) Len() int { return len(d.groups) }

// Put adds or updates alerts in their groups at now. A resolved alert a
// group does not hold is left out: either its resolution was told
// already or it was never told as firing.
func (d *Dispatcher) Put(now time.Time, alerts ...Alert) {
	for _, a := range alerts {
		fp := a.Fingerprint()
		resolved := a.Resolved(now)
		for _, rt := range d.route.match(a.Labels) {
			gl := rt.groupLabels(a.Labels)
			id := groupID{rt, rt.groupKey(gl)}
			g := d.groups[id]
			if g == nil {
				if resolved {
					continue
				}
				g = &group{route: rt, key: id.key, labels: gl, alerts: map[model.Fingerprint]Alert{},
					nextFlush: now.Add(rt.wait)}
				d.groups[id] = g
			}
			if _, held := g.alerts[fp]; !held && resolved {
				continue
			}
			g.alerts[fp] = a
			// Alertmanager 0.25 flushes a group at once when an alert
			// that started longer than group_wait ago arrives before
			// the first flush: it has waited enough elsewhere.
			if !g.flushed && a.StartsAt.Add(rt.wait).Before(now) {
				g.nextFlush = now
			}
		}
	}
}

// LogKey returns a notification log key for a group key and receiver: a
// hash, because group keys hold characters KV keys cannot.
func LogKey(receiver, groupKey string) string {
	h := sha256.Sum256([]byte(receiver + "\x00" + groupKey))
	return "nflog." + hex.EncodeToString(h[:16])
}

// Due returns the groups whose flush time has come at now, as the
// notifications they would send (muted alerts left out), and schedules
// their next flush. Nothing leaves a group here: resolved alerts leave
// when Delivered says their resolution was told.
func (d *Dispatcher) Due(now time.Time, muter Muter) []Due {
	var out []Due
	for id, g := range d.groups {
		if now.Before(g.nextFlush) {
			continue
		}
		g.nextFlush, g.flushed = now.Add(g.route.interval), true
		if len(g.alerts) == 0 {
			delete(d.groups, id)
			continue
		}
		n := Notification{Receiver: g.route.Receiver, GroupKey: g.key, GroupLabels: maps.Clone(g.labels)}
		var firing, resolved []Alert
		for _, a := range g.alerts {
			switch {
			case a.Resolved(now):
				resolved = append(resolved, a)
			case muter == nil || !muter.Mutes(a.Labels, now):
				firing = append(firing, a)
			}
		}
		if len(firing) == 0 && len(resolved) == 0 {
			continue // every alert muted
		}
		n.Alerts = slices.Concat(firing, resolved)
		slices.SortStableFunc(n.Alerts, notificationOrder)
		for _, a := range firing {
			n.Firing = append(n.Firing, uint64(a.Fingerprint()))
		}
		for _, a := range resolved {
			n.Resolved = append(n.Resolved, uint64(a.Fingerprint()))
		}
		slices.Sort(n.Firing)
		slices.Sort(n.Resolved)
		n.Status = "resolved"
		if len(firing) > 0 {
			n.Status = "firing"
		}
		out = append(out, Due{Notification: n, Repeat: g.route.repeat, Interval: g.route.interval, route: g.route})
	}
	sort.Slice(out, func(i, j int) bool {
		return cmp.Or(cmp.Compare(out[i].GroupKey, out[j].GroupKey), cmp.Compare(out[i].Receiver, out[j].Receiver)) < 0
	})
	return out
}

// Delivered tells the dispatcher that d's notification was sent, or that
// the notification log says it need not be: its resolved alerts leave
// their group unless they fired again since, and a group left empty goes.
func (d *Dispatcher) Delivered(due Due, now time.Time) {
	id := groupID{due.route, due.GroupKey}
	g := d.groups[id]
	if g == nil {
		return
	}
	for _, sent := range due.Alerts {
		fp := sent.Fingerprint()
		if a, ok := g.alerts[fp]; ok && a.Resolved(now) && a.EndsAt.Equal(sent.EndsAt) && sent.Resolved(now) {
			delete(g.alerts, fp)
		}
	}
	if len(g.alerts) == 0 {
		delete(d.groups, id)
	}
}

// Due is a group's flush: the notification it would send, its route's
// repeat interval (for NeedsUpdate) and group interval (how long a
// failing receiver is retried before the next flush tries again).
type Due struct {
	Notification
	Repeat, Interval time.Duration
	route            *Route
}

// AlertGroup is a group as the API lists it.
type AlertGroup struct {
	// Route is the route the group belongs to; its Receiver receives it.
	Route *Route
	// Key is the group key.
	Key string
	// Labels are the group labels.
	Labels map[string]string
	// Alerts are the group's alerts keep accepts, sorted by fingerprint.
	Alerts []Alert
}

// Groups returns the groups of the routes keepRoute accepts (nil: all)
// with the alerts keep accepts, leaving out groups with none, ordered as
// Alertmanager's API orders them: by labels, then receiver.
func (d *Dispatcher) Groups(keepRoute func(*Route) bool, keep func(Alert) bool) []AlertGroup {
	var out []AlertGroup
	for _, g := range d.groups {
		if keepRoute != nil && !keepRoute(g.route) {
			continue
		}
		ag := AlertGroup{Route: g.route, Key: g.key, Labels: maps.Clone(g.labels)}
		for _, a := range g.alerts {
			if keep == nil || keep(a) {
				ag.Alerts = append(ag.Alerts, a)
			}
		}
		if len(ag.Alerts) == 0 {
			continue
		}
		sortAlerts(ag.Alerts)
		out = append(out, ag)
	}
	sort.Slice(out, func(i, j int) bool {
		li, lj := labelSet(out[i].Labels), labelSet(out[j].Labels)
		if li.Equal(lj) {
			return out[i].Route.Receiver < out[j].Route.Receiver
		}
		return li.Before(lj)
	})
	return out
}

func labelSet(m map[string]string) model.LabelSet {
	ls := make(model.LabelSet, len(m))
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

// notificationOrder orders a notification's alerts as Alertmanager's
// AlertSlice does: by job, then instance (an alert without the label
// last), then by label set.
func notificationOrder(a, b Alert) int {
	for _, k := range [...]string{"job", "instance"} {
		va, oka := a.Labels[k]
		vb, okb := b.Labels[k]
		switch {
		case !oka && !okb:
			continue
		case !oka:
			return 1
		case !okb:
			return -1
		case va != vb:
			return strings.Compare(va, vb)
		}
	}
	la, lb := labelSet(a.Labels), labelSet(b.Labels)
	switch {
	case la.Before(lb):
		return -1
	case lb.Before(la):
		return 1
	}
	return 0
}
