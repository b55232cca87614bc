package alerting

import (
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
	route     *Route
	key       string
	labels    map[string]string
	alerts    map[model.Fingerprint]Alert
	nextFlush time.Time
}

// Dispatcher groups alerts by route and group_by labels and decides when
// each group flushes: group_wait after its first alert, then every
// group_interval; whether a flush notifies is the notification log's
// decision (NeedsUpdate). It is pure: time is passed in. It is not safe
// for concurrent use.
type Dispatcher struct {
	route  *Route
	groups map[string]*group
}

// NewDispatcher returns a dispatcher routing through route.
func NewDispatcher(route *Route) *Dispatcher {
	return &Dispatcher{route: route, groups: map[string]*group{}}
}

// SetRoute replaces the routing tree; groups of routes that no longer
// exist flush no more.
func (d *Dispatcher) SetRoute(route *Route) {
	d.route = route
	d.groups = map[string]*group{}
}

// Groups returns the number of groups held.
func (d *Dispatcher) Groups() int { return len(d.groups) }

// Put adds or updates alerts in their groups at now.
func (d *Dispatcher) Put(now time.Time, alerts ...Alert) {
	for _, a := range alerts {
		for _, rt := range d.route.match(a.Labels) {
			gl := groupLabels(rt, a.Labels)
			key := groupKey(rt, gl)
			g := d.groups[key]
			if g == nil {
				if a.Resolved(now) {
					continue // nothing to tell about an alert never grouped
				}
				g = &group{route: rt, key: key, labels: gl, alerts: map[model.Fingerprint]Alert{},
					nextFlush: now.Add(rt.GroupWait.Std())}
				d.groups[key] = g
			}
			g.alerts[a.Fingerprint()] = a
		}
	}
}

func groupLabels(rt *Route, lbls map[string]string) map[string]string {
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

// groupKey is Alertmanager's: the route's id and the group labels.
func groupKey(rt *Route, gl map[string]string) string {
	names := slices.Sorted(maps.Keys(gl))
	var b strings.Builder
	b.WriteString(rt.id + ":{")
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n + "=\"" + gl[n] + "\"")
	}
	b.WriteString("}")
	return b.String()
}

// LogKey returns a notification log key for a group key and receiver: a
// hash, because group keys hold characters KV keys cannot.
func LogKey(receiver, groupKey string) string {
	h := sha256.Sum256([]byte(receiver + "\x00" + groupKey))
	return "nflog." + hex.EncodeToString(h[:16])
}

// Due returns the groups whose flush time has come at now, as the
// notifications they would send (muted alerts left out), and schedules
// their next flush. Alerts resolved at now leave their group after this
// flush; empty groups go away. Each notification carries the route's
// repeat interval for NeedsUpdate.
func (d *Dispatcher) Due(now time.Time, muter Muter) []Due {
	var out []Due
	for key, g := range d.groups {
		if now.Before(g.nextFlush) {
			continue
		}
		g.nextFlush = now.Add(g.route.GroupInterval.Std())
		n := Notification{Receiver: g.route.Receiver, GroupKey: g.key, GroupLabels: g.labels}
		var firing, resolved []Alert
		for fp, a := range g.alerts {
			if a.Resolved(now) {
				resolved = append(resolved, a)
				delete(g.alerts, fp)
				continue
			}
			if muter != nil && muter.Mutes(a.Labels, now) {
				continue
			}
			firing = append(firing, a)
		}
		if len(g.alerts) == 0 {
			delete(d.groups, key)
		}
		if len(firing) == 0 && len(resolved) == 0 {
			continue // every alert muted
		}
		sortAlerts(firing)
		sortAlerts(resolved)
		n.Alerts = append(firing, resolved...)
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
		out = append(out, Due{Notification: n, Repeat: g.route.RepeatInterval.Std()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GroupKey < out[j].GroupKey })
	return out
}

// Due is a group's flush: the notification it would send and its route's
// repeat interval.
type Due struct {
	Notification
	Repeat time.Duration
}
