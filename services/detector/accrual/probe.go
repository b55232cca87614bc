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
