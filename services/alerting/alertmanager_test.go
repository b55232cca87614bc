package alerting

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// notifyAll is the notification log's decision without KV, every due
// group delivered (as when the receiver answers).
func notifyAll(e *Engine, l memLog, now time.Time) []Notification {
	var out []Notification
	for _, due := range e.Flush(now) {
		k := LogKey(due.Receiver, due.GroupKey)
		if NeedsUpdate(l[k], due.Firing, due.Resolved, now, due.Repeat) {
			l[k] = &LogEntry{Firing: due.Firing, Resolved: due.Resolved, At: now}
			out = append(out, due.Notification)
		}
		e.Delivered(due, now)
	}
	return out
}

func posted(name, inst string) PostableAlert {
	return PostableAlert{Labels: map[string]string{"alertname": name, "instance": inst, "severity": "warning"}}
}

// A resolved alert is told once: the repeats that follow list only what
// still fires, although the resolved alert stays among the current
// alerts (and is merged again at each evaluation) for the retention.
func TestResolvedAlertToldOnce(t *testing.T) {
	e := NewEngine(mustConfig(t, "route: {group_by: [alertname], group_wait: 1s, group_interval: 1s, repeat_interval: 3s}\n"),
		NewSignals(), NewSilences(), t0)
	l := memLog{}
	e.Evaluate(t0)
	e.Post(t0, posted("Grp", "a1"), posted("Grp", "a2"))
	ns := notifyAll(e, l, t0.Add(time.Second))
	require.Len(t, ns, 1)
	require.Len(t, ns[0].Firing, 2)

	a1 := posted("Grp", "a1")
	a1.EndsAt = t0.Add(2 * time.Second)
	e.Post(t0.Add(2*time.Second), a1)
	ns = notifyAll(e, l, t0.Add(2*time.Second))
	require.Len(t, ns, 1)
	require.Len(t, ns[0].Resolved, 1, "the resolution is told")

	var repeats []Notification
	for s := 3; s <= 12; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		e.Evaluate(now)
		repeats = append(repeats, notifyAll(e, l, now)...)
	}
	require.NotEmpty(t, repeats, "repeat_interval repeats the group")
	for _, n := range repeats {
		require.Empty(t, n.Resolved, "a repeat lists the resolved alert again")
		require.Len(t, n.Alerts, 1)
		require.Equal(t, "a2", n.Alerts[0].Labels["instance"])
	}
}

// A standby does not drop a resolved alert it did not tell: when it takes
// over, its next flush tells the resolution.
func TestStandbyKeepsResolutionUntilTold(t *testing.T) {
	e := NewEngine(mustConfig(t, "route: {group_by: [alertname], group_wait: 1s, group_interval: 1s}\n"), NewSignals(), NewSilences(), t0)
	l := memLog{}
	e.Evaluate(t0)
	e.Post(t0, posted("Grp", "a1"))
	require.Len(t, notifyAll(e, l, t0.Add(time.Second)), 1, "told firing (by the active instance)")

	a1 := posted("Grp", "a1")
	a1.EndsAt = t0.Add(2 * time.Second)
	e.Post(t0.Add(2*time.Second), a1)
	// Flushes on the standby: the log still says firing, nobody sends.
	for s := 2; s < 6; s++ {
		dues := e.Flush(t0.Add(time.Duration(s) * time.Second))
		require.Len(t, dues, 1)
		require.True(t, NeedsUpdate(l[LogKey(dues[0].Receiver, dues[0].GroupKey)], dues[0].Firing, dues[0].Resolved, t0, time.Hour))
	}
	ns := notifyAll(e, l, t0.Add(6*time.Second))
	require.Len(t, ns, 1, "the standby, now active, tells the resolution")
	require.Equal(t, "resolved", ns[0].Status)
	require.Zero(t, e.Status(t0.Add(6*time.Second)).Groups, "told, the resolved alert and its group go")
}

// group_wait runs from a posted alert's arrival, not from the next
// evaluation; an alert that started longer than group_wait ago opens a
// group that flushes at once (Alertmanager 0.25).
func TestGroupWaitFromArrival(t *testing.T) {
	e := NewEngine(mustConfig(t, "evaluation_interval: 1m\nroute: {group_by: [alertname], group_wait: 2s}\n"), NewSignals(), NewSilences(), t0)
	e.Evaluate(t0)
	at := t0.Add(10 * time.Second)
	e.Post(at, posted("New", "a"))
	require.Empty(t, e.Flush(at.Add(time.Second)))
	require.Len(t, e.Flush(at.Add(2*time.Second)), 1, "due group_wait after arrival, no evaluation between")

	old := posted("Old", "a")
	old.StartsAt = at.Add(-time.Hour)
	e.Post(at, old)
	dues := e.Flush(at)
	require.Len(t, dues, 1)
	require.Equal(t, "Old", dues[0].GroupLabels["alertname"])
	require.Len(t, e.Alerts(at, AllAlerts), 2, "posted alerts are listed at once")
}

func TestGroupKeyIsAlertmanagers(t *testing.T) {
	c := mustConfig(t, `
receivers: [{name: a}, {name: db}]
route:
  group_by: [alertname, service]
  routes:
    - matchers: ['team="db"', 'env=~"prod|staging"']
      receiver: db
`)
	d := NewDispatcher(c.Route)
	d.Put(t0, Alert{Labels: map[string]string{"alertname": "Grp", "service": "api"}, StartsAt: t0},
		Alert{Labels: map[string]string{"alertname": "Db", "service": "pg", "team": "db", "env": "prod"}, StartsAt: t0})
	var keys []string
	for _, due := range d.Due(t0.Add(time.Hour), nil) {
		keys = append(keys, due.GroupKey)
	}
	require.Equal(t, []string{
		`{}/{env=~"prod|staging",team="db"}:{alertname="Db", service="pg"}`,
		`{}:{alertname="Grp", service="api"}`,
	}, keys)
}

func TestFiringEndsAtIsZeroInThePayload(t *testing.T) {
	now := t0.Add(time.Minute)
	firing := Alert{Labels: map[string]string{"alertname": "A", "i": "1"}, StartsAt: t0, EndsAt: now.Add(5 * time.Minute)}
	resolved := Alert{Labels: map[string]string{"alertname": "A", "i": "2"}, StartsAt: t0, EndsAt: now.Add(-time.Second)}
	b, err := json.Marshal(Message(Notification{Alerts: []Alert{firing, resolved}, Status: "firing"}, "", now))
	require.NoError(t, err)
	require.Contains(t, string(b), `"status":"firing","labels":{"alertname":"A","i":"1"},"annotations":{},"startsAt":"2025-03-01T12:00:00Z","endsAt":"0001-01-01T00:00:00Z"`)
	require.Contains(t, string(b), `"endsAt":"2025-03-01T12:00:59Z"`)
}

// The API's alerts have Alertmanager's GettableAlert shape, inhibitedBy
// names the inhibiting alert's fingerprint, resolved alerts are not
// listed, and the state filters apply.
func TestAlertsInAPIv2Shape(t *testing.T) {
	c := mustConfig(t, `
receivers: [{name: hook}, {name: db}]
route: {receiver: hook, routes: [{matchers: ['team="db"'], receiver: db, continue: true}]}
inhibit_rules: [{source_matchers: ['severity="critical"'], target_matchers: ['severity="warning"'], equal: [instance]}]
`)
	ss := NewSilences()
	e := NewEngine(c, NewSignals(), ss, t0)
	e.Evaluate(t0)
	src := PostableAlert{Labels: map[string]string{"alertname": "Down", "severity": "critical", "instance": "i1", "team": "db"}}
	tgt := posted("Slow", "i1")
	gone := posted("Gone", "i2")
	gone.EndsAt = t0
	e.Post(t0, src, tgt, gone)
	now := t0.Add(time.Second)
	as := e.Alerts(now, AllAlerts)
	require.Len(t, as, 2, "the resolved alert is not listed")
	b, err := json.Marshal(as)
	require.NoError(t, err)
	var got []map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	byName := map[string]map[string]any{}
	for _, a := range got {
		byName[a["labels"].(map[string]any)["alertname"].(string)] = a
	}
	require.Equal(t, []any{map[string]any{"name": "db"}}, byName["Down"]["receivers"])
	srcFP := (&Alert{Labels: src.Labels}).Fingerprint().String()
	require.Equal(t, map[string]any{"state": "suppressed", "silencedBy": []any{}, "inhibitedBy": []any{srcFP}}, byName["Slow"]["status"])
	require.Equal(t, "active", byName["Down"]["status"].(map[string]any)["state"])
	for _, k := range []string{"startsAt", "endsAt", "updatedAt", "fingerprint", "annotations"} {
		require.Contains(t, byName["Down"], k)
	}

	f := AllAlerts
	f.Active = false
	require.Len(t, e.Alerts(now, f), 1, "active=false keeps only the suppressed alert")
	f = AllAlerts
	f.Inhibited = false
	require.Len(t, e.Alerts(now, f), 1)
	f = AllAlerts
	f.Receiver = mustRegexp(t, "db")
	require.Len(t, e.Alerts(now, f), 1, "receiver=db")
	groups := e.Groups(now, f)
	require.Len(t, groups, 1)
	require.Equal(t, "db", groups[0].Receiver.Name)
}

func TestRulesFileRefusesUnknownKeysAndZeroTimers(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"misspelt key", "route:\n  group_wiat: 1s\n", "line 2: field group_wiat not found"},
		{"unknown top key", "rotue: {}\n", "line 1: field rotue not found"},
		{"zero group_interval", "route:\n  group_interval: 0s\n", "line 2: group_interval cannot be zero"},
		{"zero repeat_interval in a child", "route:\n  routes:\n    - matchers: ['a=\"b\"']\n      repeat_interval: 0s\n", "line 4: repeat_interval cannot be zero"},
		{"zero evaluation_interval", "evaluation_interval: 0s\n", "line 1: evaluation_interval cannot be zero"},
		{"unknown receiver key", "receivers: [{name: r, webhook_url: [x]}]\n", "field webhook_url not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			require.ErrorIs(t, err, ErrConfig)
			require.ErrorContains(t, err, tt.want)
		})
	}
	c := mustConfig(t, "route: {group_wait: 0s, routes: [{matchers: ['a=\"b\"'], group_wait: 3s}]}\n")
	require.Zero(t, c.Route.Wait(), "group_wait 0 is allowed, as in Alertmanager")
	require.Equal(t, 3*time.Second, c.Route.Routes[0].Wait())
}

func TestAlertmanagerConfigOfTheRoutingTree(t *testing.T) {
	c := mustConfig(t, `
receivers: [{name: hook, webhook_urls: ['http://127.0.0.1:1/x'], max_alerts: 5}, {name: db, stream: true}]
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 2s
  routes: [{matchers: ['team="db"'], receiver: db, continue: true, repeat_interval: 1h}]
inhibit_rules: [{source_matchers: ['severity="critical"'], target_matchers: ['severity="warning"'], equal: [instance]}]
`)
	b, err := c.AlertmanagerConfig()
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, yaml.Unmarshal(b, &got), "%s", b)
	want := `route:
    receiver: hook
    group_by:
        - alertname
    group_wait: 2s
    routes:
        - receiver: db
          continue: true
          matchers:
            - team="db"
          repeat_interval: 1h
receivers:
    - name: hook
      webhook_configs:
        - url: http://127.0.0.1:1/x
          max_alerts: 5
    - name: db
inhibit_rules:
    - source_matchers:
        - severity="critical"
      target_matchers:
        - severity="warning"
      equal:
        - instance
`
	require.Equal(t, want, string(b))
}

func TestSilenceQueryMatchesMatchersExactly(t *testing.T) {
	eq, ne := true, false
	sl := func(isEqual bool) Silence {
		return Silence{Matchers: []Matcher{{Name: "service", Value: "web", IsEqual: &isEqual}}}
	}
	f, err := parseFilter([]string{`service="web"`})
	require.NoError(t, err)
	require.True(t, silenceMatches(sl(eq), f))
	require.False(t, silenceMatches(sl(ne), f), `service="web" does not list a silence on service!="web"`)
	_, err = parseFilter([]string{"{"})
	require.Error(t, err, "a filter that does not parse is refused")
	require.True(t, strings.Contains(err.Error(), "bad matcher"))
}

func mustRegexp(t *testing.T, s string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile("^(?:" + s + ")$")
	require.NoError(t, err)
	return re
}

func TestToldResolvedKeepsOnlyWhatTheLogTold(t *testing.T) {
	a := Alert{Labels: map[string]string{"alertname": "A", "i": "1"}, EndsAt: t0}
	b := Alert{Labels: map[string]string{"alertname": "A", "i": "2"}, EndsAt: t0}
	d := Due{Notification: Notification{Alerts: []Alert{a, b}}}
	require.Empty(t, toldResolved(d, nil).Alerts)
	got := toldResolved(d, &LogEntry{Resolved: []uint64{uint64(b.Fingerprint())}})
	require.Equal(t, []Alert{b}, got.Alerts)
}
