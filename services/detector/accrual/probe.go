package accrual

import (
	"time"

	"github.com/platform/platform/membership"
)

// ObserveRTT records the round trip of a probe of the member with key (or
// the probe's timeout, when it got no answer). The round trip is one of
// the signals of the member's network quality class.
func (t *Table) ObserveRTT(key string, rtt time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.members[key]
	if m == nil {
		return
	}
	m.answered = true
	m.path.observeRTT(float64(rtt)/1e6, m.expected(t.opts.DefaultInterval))
	if q := m.path.quality; m.path.classify() != q && m.heartbeats > 0 {
		t.schedule(m)
	}
}

// NoProbe leaves the member with key out of ProbeTargets until until (it
// answers no probe).
func (t *Table) NoProbe(key string, until time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.members[key]; m != nil {
		m.probeAfter = int64(until)
	}
}

// ProbeTargets returns the keys of up to n alive members due for a probe
// at now, round robin over calls.
func (t *Table) ProbeTargets(n int, now time.Duration) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for i := 0; i < len(t.list) && len(out) < n; i++ {
		t.cursor = (t.cursor + 1) % len(t.list)
		m := t.list[t.cursor]
		if m.state == membership.Alive && int64(now) >= m.probeAfter {
			out = append(out, m.key)
		}
	}
	return out
}

// LateTargets returns the keys of members that answered a probe before
// and are now late: alive or suspect and silent for LateProbeIntervals
// intervals or more. A late member is returned again each further
// LateProbeIntervals of silence, so a process that dies while stalled is
// still found out. Probing them at once tells a process that is gone (its
// connection closed: "no responders", see Gone) from one that is stalled
// or cut off (no answer), which only time tells apart.
func (t *Table) LateTargets(now time.Duration) []string {
	if t.opts.LateProbeIntervals <= 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := int64(now)
	var out []string
	for _, m := range t.list {
		if !m.answered || (m.state != membership.Alive && m.state != membership.Suspect) {
			continue
		}
		late := int64(t.opts.LateProbeIntervals * m.expected(t.opts.DefaultInterval) * 1e6)
		if ns-m.last >= late && ns-max(m.lateProbed, m.last) >= late {
			m.lateProbed = ns
			out = append(out, m.key)
		}
	}
	return out
}

// Gone records that a probe of the member with key found no responder at
// now. For a member that answered probes before and has been silent for
// LateProbeIntervals, that is a death: its process's connection closed,
// and nothing else takes its subscriptions away. The member is dead at
// once. A member that never answered is not a micro service: it is left
// out of probes for ten minutes.
func (t *Table) Gone(key string, now time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.members[key]
	if m == nil {
		return
	}
	ns := int64(now)
	if !m.answered {
		m.probeAfter = ns + int64(10*time.Minute)
		return
	}
	late := int64(t.opts.LateProbeIntervals * m.expected(t.opts.DefaultInterval) * 1e6)
	if t.opts.LateProbeIntervals <= 0 || ns-m.last < late || (m.state != membership.Alive && m.state != membership.Suspect) {
		return
	}
	m.deadAt = min(m.deadAt, ns)
	t.setState(m, membership.Dead, ns)
}
