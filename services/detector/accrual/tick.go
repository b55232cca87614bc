package accrual

import (
	"math"
	"time"

	"github.com/platform/platform/membership"
)

// Change is a transition derived by Tick, with the sequence of the
// instance's last heartbeat: with the member's LastSeen, it tells two
// detectors deriving the same change apart from a later one, so a
// publisher can give both the same message id.
type Change struct {
	membership.Transition
	// Seq is the sequence of the instance's last heartbeat (0 if it sent
	// none, or none with a sequence).
	Seq uint64 `json:"-"`
}

// TickResult is what one Tick produced for the active detector to
// publish.
type TickResult struct {
	// Transitions are the members whose state differs from the one last
	// published, in table order.
	Transitions []Change
	// Writes are the records to write: every transition's, then the
	// refreshes that were due.
	Writes []membership.Member
	// Deletes are the keys of forgotten members whose records were
	// published.
	Deletes []string
	// Counts are the members in each state.
	Counts map[membership.State]int
	// At is the wall time of the evaluation.
	At time.Time
}

// Tick evaluates every member at now: it moves members whose deadlines
// passed to suspect or dead, confirms deaths for training, forgets
// long-gone members, and, when active, derives the transitions to publish
// (every member whose state differs from what MEMBERS holds) and the
// records to write: all transitions, then refreshes that are due, at most
// budget of them. Standby (not active), it derives nothing.
func (t *Table) Tick(now time.Duration, active bool, budget int) TickResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := int64(now)
	res := TickResult{Counts: make(map[membership.State]int, 4), At: t.wall(ns)}
	for i := 0; i < len(t.list); i++ {
		m := t.list[i]
		switch m.state {
		case membership.Alive, membership.Suspect:
			if ns >= m.deadAt {
				t.setState(m, membership.Dead, ns)
			} else if ns >= m.suspectAt {
				t.setState(m, membership.Suspect, ns)
			} else if m.state == membership.Suspect {
				t.setState(m, membership.Alive, ns) // deadline moved (better path)
			}
		case membership.Dead, membership.Left:
			if ns-m.since >= int64(t.opts.ForgetAfter) {
				if active && m.published != "" {
					res.Deletes = append(res.Deletes, m.key)
				}
				t.remove(m)
				i--
				continue
			}
		}
		if m.state == membership.Dead && m.pending != nil && ns-m.deadSince >= int64(t.opts.ConfirmDeath) {
			t.pred.positive(m.pending)
			m.pending = nil
		}
		res.Counts[m.state]++
		if !active {
			continue
		}
		switch {
		case m.state != m.published:
			rec := t.record(m, ns)
			res.Transitions = append(res.Transitions, Change{
				Transition: membership.Transition{Member: rec, Previous: m.published, At: t.wall(ns)},
				Seq:        m.seq,
			})
			res.Writes = append(res.Writes, rec)
			t.wrote(m, ns)
			m.published = m.state
		case budget > 0 && t.writeDue(m, ns):
			res.Writes = append(res.Writes, t.record(m, ns))
			t.wrote(m, ns)
			budget--
		}
	}
	return res
}

// writeDue reports whether an unchanged member's record should be
// rewritten: its refresh is due, or its quality class or failure
// probability moved a lot and the last write is a second old. A dead or
// left member's record is refreshed only when due, deadRefresh times
// less often.
func (t *Table) writeDue(m *member, now int64) bool {
	if now >= m.nextWrite {
		return true
	}
	if m.state == membership.Dead || m.state == membership.Left {
		return false
	}
	if now-m.lastWrite < int64(time.Second) {
		return false
	}
	return m.path.quality != m.wroteQ || math.Abs(m.prob-m.wroteProb) >= 0.2
}

// deadRefresh is how many refresh intervals a dead or left member's
// record waits between rewrites. It is still refreshed, so a lost write
// heals, but only its growing phi changes, and ten thousand instances
// that died together should not cost a rewrite each every interval.
const deadRefresh = 6

func (t *Table) wrote(m *member, now int64) {
	m.lastWrite = now
	every := int64(t.opts.RefreshInterval)
	if m.state == membership.Dead || m.state == membership.Left {
		every *= deadRefresh
	}
	// Three quarters of an interval and up to half of one more: writes of
	// members that changed together spread out within a few refreshes.
	m.nextWrite = now + every*3/4 + t.rng.Int64N(every/2+1)
	m.wroteQ, m.wroteProb = m.path.quality, m.prob
}

func (t *Table) record(m *member, now int64) membership.Member {
	r := membership.Member{
		Service:            m.svc,
		Instance:           m.inst,
		State:              m.state,
		Phi:                m.phi(now),
		Quality:            m.path.quality,
		FailureProbability: math.Round(m.prob*10000) / 10000,
	}
	if m.heartbeats > 0 || m.last != 0 {
		r.LastSeen = t.wall(m.last).UTC()
	}
	return r
}
