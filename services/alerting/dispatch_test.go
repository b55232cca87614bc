package alerting

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func alert(name, inst string, starts time.Time) Alert {
	return Alert{Labels: map[string]string{"alertname": name, "severity": "critical", "service": "s", "instance": inst}, StartsAt: starts}
}

// memLog is the notification log's decision without KV.
type memLog map[string]*LogEntry

func (l memLog) flush(d *Dispatcher, now time.Time, m Muter) []Notification {
	var out []Notification
	for _, due := range d.Due(now, m) {
		k := LogKey(due.Receiver, due.GroupKey)
		if NeedsUpdate(l[k], due.Firing, due.Resolved, now, due.Repeat) {
			l[k] = &LogEntry{Firing: due.Firing, Resolved: due.Resolved, At: now}
			out = append(out, due.Notification)
		}
		d.Delivered(due, now)
	}
	return out
}

func TestGroupingTimers(t *testing.T) {
	c := mustConfig(t, "route: {group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 4h}\n")
	d := NewDispatcher(c.Route)
	log := memLog{}
	// A storm: 100 instances die within 10s; one notification lists them all.
	for i := range 100 {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		d.Put(at, alert("InstanceDead", string(rune('a'+i%26))+string(rune('0'+i/26)), at))
	}
	require.Empty(t, log.flush(d, t0.Add(29*time.Second), nil), "nothing before group_wait")
	ns := log.flush(d, t0.Add(30*time.Second), nil)
	require.Len(t, ns, 1)
	require.Len(t, ns[0].Alerts, 100)
	require.Equal(t, "firing", ns[0].Status)
	require.Empty(t, log.flush(d, t0.Add(5*time.Minute), nil), "group_interval not passed")
	require.Empty(t, log.flush(d, t0.Add(5*time.Minute+30*time.Second), nil), "nothing new at group_interval")
	ns = log.flush(d, t0.Add(4*time.Hour+31*time.Second), nil)
	require.Len(t, ns, 1, "repeat_interval")

	// One resolves: told at the next group_interval, then it leaves the group.
	now := t0.Add(4*time.Hour + time.Minute)
	a := alert("InstanceDead", "a0", t0)
	a.EndsAt = now
	d.Put(now, a)
	ns = log.flush(d, t0.Add(4*time.Hour+5*time.Minute+31*time.Second), nil)
	require.Len(t, ns, 1)
	require.Len(t, ns[0].Firing, 99)
	require.Len(t, ns[0].Resolved, 1)
	require.Empty(t, log.flush(d, t0.Add(4*time.Hour+10*time.Minute+31*time.Second), nil))
}

func TestNeedsUpdate(t *testing.T) {
	prev := &LogEntry{Firing: []uint64{1, 2}, At: t0}
	tests := []struct {
		name             string
		prev             *LogEntry
		firing, resolved []uint64
		after            time.Duration
		want             bool
	}{
		{"first firing", nil, []uint64{1}, nil, 0, true},
		{"never told, only resolved", nil, nil, []uint64{1}, 0, false},
		{"same", prev, []uint64{1, 2}, nil, time.Minute, false},
		{"fewer firing, none resolved (muted)", prev, []uint64{1}, nil, time.Minute, false},
		{"new firing", prev, []uint64{1, 2, 3}, nil, time.Minute, true},
		{"told one resolved", prev, []uint64{1}, []uint64{2}, time.Minute, true},
		{"resolution of one never told", prev, []uint64{1, 2}, []uint64{9}, time.Minute, false},
		{"repeat", prev, []uint64{1, 2}, nil, time.Hour, true},
		{"all resolved, told", &LogEntry{Resolved: []uint64{1, 2}, Firing: []uint64{1, 2}, At: t0}, nil, []uint64{1, 2}, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsUpdate(tt.prev, tt.firing, tt.resolved, t0.Add(tt.after), time.Hour); got != tt.want {
				t.Fatalf("NeedsUpdate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSilencesAndInhibition(t *testing.T) {
	ss := NewSilences()
	ms, err := MatchersFromStrings([]string{`alertname="InstanceDead"`, `instance=~"a.*"`, `service!="x"`})
	require.NoError(t, err)
	require.NoError(t, ss.Set(Silence{ID: "s1", Matchers: ms, StartsAt: t0, EndsAt: t0.Add(time.Hour), CreatedBy: "me"}))
	require.Error(t, ss.Set(Silence{ID: "s2", Matchers: []Matcher{{Name: "a", Value: ".*", IsRegex: true}}, StartsAt: t0, EndsAt: t0.Add(time.Hour), CreatedBy: "me"}),
		"a silence matching everything is refused")
	tests := []struct {
		name string
		lbls map[string]string
		at   time.Duration
		want bool
	}{
		{"match", alert("InstanceDead", "a1", t0).Labels, time.Minute, true},
		{"regex anchored", alert("InstanceDead", "ba1", t0).Labels, time.Minute, false},
		{"other alert", alert("HighP99", "a1", t0).Labels, time.Minute, false},
		{"before start", alert("InstanceDead", "a1", t0).Labels, -time.Minute, false},
		{"after end", alert("InstanceDead", "a1", t0).Labels, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ss.Mutes(tt.lbls, t0.Add(tt.at)); got != tt.want {
				t.Fatalf("Mutes = %v, want %v", got, tt.want)
			}
		})
	}
	require.Empty(t, ss.Expired(t0.Add(2*time.Hour), 2*time.Hour))
	require.Equal(t, []string{"s1"}, ss.Expired(t0.Add(4*time.Hour), 2*time.Hour))

	c := mustConfig(t, "inhibit_rules: [{source_matchers: ['alertname=\"InstanceDead\"'], target_matchers: ['severity=\"warning\"'], equal: [instance]}]\n")
	in := NewInhibitor(c.InhibitRules)
	dead := alert("InstanceDead", "i1", t0)
	in.Update([]Alert{dead}, t0)
	warn := map[string]string{"alertname": "HighP99", "severity": "warning", "instance": "i1"}
	require.True(t, in.Mutes(warn, t0))
	warn["instance"] = "i2"
	require.False(t, in.Mutes(warn, t0), "equal labels differ")
	dead.EndsAt = t0
	in.Update([]Alert{dead}, t0)
	warn["instance"] = "i1"
	require.False(t, in.Mutes(warn, t0), "resolved sources inhibit nothing")
}

func TestEngineHoldsFlushesAfterStart(t *testing.T) {
	const rules = `
route: {group_wait: 1s}
rules:
  - alert: Dead
    over: members
    expr: state == "dead"
    labels: {severity: critical}
  - alert: Slow
    over: members
    expr: phi > 1
    for: 20s
    labels: {severity: warning}
`
	for _, tc := range []struct {
		name, inhibit string
		held          bool
	}{
		{"a rule with for inhibits", "inhibit_rules: [{source_matchers: ['alertname=\"Slow\"'], target_matchers: ['severity=\"info\"']}]", true},
		{"only a rule without for inhibits", "inhibit_rules: [{source_matchers: ['alertname=\"Dead\"'], target_matchers: ['severity=\"info\"']}]", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(mustConfig(t, rules+tc.inhibit+"\n"), NewSignals(), NewSilences(), t0)
			e.Post(t0, PostableAlert{Labels: map[string]string{"alertname": "Ext", "severity": "info"}})
			e.Evaluate(t0)
			if !tc.held {
				require.Len(t, e.Flush(t0.Add(10*time.Second)), 1, "nothing to hold for")
				return
			}
			require.Empty(t, e.Flush(t0.Add(10*time.Second)), "held for the inhibiting rule's for")
			require.Len(t, e.Flush(t0.Add(20*time.Second)), 1)
		})
	}
}

func TestSeverityOnTheStream(t *testing.T) {
	for _, tc := range []struct{ name, label, want string }{
		{"critical", "critical", "critical"},
		{"info", "info", "info"},
		{"another", "page", "warning"},
		{"none", "", "warning"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lbls := map[string]string{"alertname": "A"}
			if tc.label != "" {
				lbls["severity"] = tc.label
			}
			if got := Severity(lbls); got != tc.want {
				t.Fatalf("Severity(%v) = %q, want %q", lbls, got, tc.want)
			}
		})
	}
}
