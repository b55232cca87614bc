package detector

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/platform/platform/service"
)

// State is what the detector believes of an instance.
type State string

// States. An instance is alive while its heartbeats arrive as expected,
// suspect once it has been silent for part of the pause it is allowed,
// dead once its phi passes the threshold, and left after a goodbye
// heartbeat ("leaving":true). Dead and left instances come back alive
// with their next heartbeat.
const (
	Alive   State = "alive"
	Suspect State = "suspect"
	Dead    State = "dead"
	Left    State = "left"
)

// Member is an instance's record in KV MEMBERS under <service>.<instance>.
type Member struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	State    State  `json:"state"`
	// Phi is the suspicion level: it passes the detector's threshold
	// (8 by default) when the instance is declared dead.
	Phi float64 `json:"phi"`
	// LastSeen is when the detector last received a heartbeat.
	LastSeen time.Time `json:"last_seen"`
	// Quality is the class of the instance's network path.
	Quality Quality `json:"quality"`
	// FailureProbability is the predictor's probability that the instance
	// dies within the prediction horizon.
	FailureProbability float64 `json:"failure_probability"`
}

// Key returns the member's MEMBERS key, <service>.<instance>.
func (m Member) Key() string { return m.Service + "." + m.Instance }

// Transition is a change of state, published to DETECTOR as
// detector.<state>.<service>.<instance>: the member's record as of the
// change, the state it left (empty for an instance seen for the first
// time) and when the change happened.
type Transition struct {
	Member
	Previous State     `json:"previous"`
	At       time.Time `json:"at"`

	// seq is the sequence of the instance's last heartbeat, part of the
	// message id that lets JetStream drop the same transition published by
	// two detectors during a handover.
	seq uint64
}

// Subject returns detector.<state>.<service>.<instance>.
func (t Transition) Subject() string {
	return "detector." + string(t.State) + "." + t.Service + "." + t.Instance
}

// maxPhi caps the published phi, which grows without bound in silence.
const maxPhi = 1000

// member is one instance's detection state.
type member struct {
	key, svc, inst string
	idx            int // position in table.list

	state     State
	published State // the state MEMBERS holds, as far as this detector knows
	since     int64 // when state last changed
	last      int64 // arrival of the last heartbeat
	seq       uint64
	interval  float64 // announced interval, ms; 0: none

	win      window
	path     pathStats
	pauseMem float64 // longest recent silence recovered from, ms, decaying

	// Deadlines, from the last heartbeat: suspect and dead when passed.
	suspectAt, deadAt int64
	// tolerance and sd parameterize phi: phi(elapsed; tolerance, sd).
	tolerance, sd float64

	tr      trend
	pending []features // heartbeats before a death not yet confirmed
	prob    float64

	nextWrite  int64
	lastWrite  int64
	wroteQ     Quality
	wroteProb  float64
	probeAfter int64
	deadSince  int64
	heartbeats uint64
}

// table is the membership table: every instance's detection state, the
// shared predictor, and the derivation of transitions and writes. Time is
// nanoseconds since epoch on a monotonic clock (or a simulated one).
type table struct {
	opts  Options
	epoch time.Time

	mu      sync.Mutex
	members map[string]*member
	list    []*member
	cursor  int // probe round robin
	pred    *predictor
	rng     *rand.Rand
	zDead   float64

	reordered uint64
	restarts  uint64
}

func newTable(opts Options, epoch time.Time) *table {
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &table{
		opts:    opts,
		epoch:   epoch,
		members: make(map[string]*member),
		pred:    newPredictor(opts.LearningRate, opts.NegativeSampling, rng),
		rng:     rng,
		zDead:   phiZ(opts.PhiThreshold),
	}
}

func (t *table) wall(ns int64) time.Time { return t.epoch.Add(time.Duration(ns)) }

// heartbeat records one heartbeat from svc/inst received at now.
func (t *table) heartbeat(svc, inst string, l service.Load, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := svc + "." + inst
	m := t.members[key]
	if m == nil {
		m = &member{key: key, svc: svc, inst: inst, win: newWindow(t.opts.WindowSize), since: now}
		m.nextWrite = now + t.spread()
		t.add(m)
	}
	t.observe(m, l, now)
}

func (t *table) add(m *member) {
	m.idx = len(t.list)
	t.list = append(t.list, m)
	t.members[m.key] = m
}

func (t *table) remove(m *member) {
	last := t.list[len(t.list)-1]
	t.list[m.idx] = last
	last.idx = m.idx
	t.list = t.list[:len(t.list)-1]
	delete(t.members, m.key)
}

// spread returns a random offset within one refresh interval, so refresh
// writes of instances that appeared together do not bunch up.
func (t *table) spread() int64 {
	return t.rng.Int64N(int64(t.opts.RefreshInterval))
}

func (t *table) observe(m *member, l service.Load, now int64) {
	first := m.heartbeats == 0
	m.heartbeats++
	if l.IntervalMS > 0 {
		iv := float64(l.IntervalMS)
		if m.interval > 0 && math.Abs(iv-m.interval) > 0.2*m.interval {
			m.win.reset() // the sender changed its pace: old gaps mislead
		}
		m.interval = iv
	}
	var gap float64
	restarted, contiguous := false, false
	if !first {
		if l.Seq > 0 && m.seq > 0 {
			switch {
			case l.Seq == 1 && m.seq > 1, l.Seq+64 < m.seq:
				t.restart(m, now)
				restarted = true
			case l.Seq <= m.seq:
				// Out of order or duplicated: proof of life from before the
				// last heartbeat, nothing to learn from its timing.
				t.reordered++
				return
			default:
				m.path.observeLoss(l.Seq - m.seq - 1)
				contiguous = l.Seq == m.seq+1
			}
		}
		gap = float64(now-m.last) / 1e6
	}
	if l.Seq > 0 {
		m.seq = l.Seq
	}
	interval := m.expected(t.opts.DefaultInterval)
	if !first && gap > 0 && !restarted {
		// A silence the instance came back from. A gap that ended a death
		// is kept out of the window (minutes of partition would wreck the
		// estimate of normal spacing) and is remembered as a pause only if
		// the sequence shows the process merely stalled.
		if m.state != Dead {
			m.win.add(gap)
			m.path.observeGap(gap, interval)
			m.pauseMem = max(m.pauseMem*t.opts.PauseMemoryDecay, gap)
		} else if contiguous {
			m.pauseMem = max(m.pauseMem*t.opts.PauseMemoryDecay, gap)
		}
		interval = m.expected(t.opts.DefaultInterval)
	}
	m.last = now
	m.path.classify()

	if l.Leaving {
		m.pending = nil
		m.tr.reset()
		t.setState(m, Left, now)
		return
	}
	if m.state == Dead {
		// Back from the dead without a restart: the death was a stall,
		// nothing to learn from it.
		m.pending = nil
	}
	t.setState(m, Alive, now)

	lateness := 0.0
	if !first && interval > 0 {
		lateness = (gap - interval) / interval
	}
	f := m.tr.observe(l, lateness, m.path.jitter)
	if t.opts.Learn {
		t.pred.observe(&f)
	}
	m.prob = t.pred.probability(&f)
	if old, evicted := m.tr.push(f, t.opts.PredictionHorizon); evicted && t.opts.Learn {
		t.pred.negative(&old)
	}
	t.schedule(m)
}

// restart handles a heartbeat whose sequence started again: a new process
// under the same name. A pending death is now certain.
func (t *table) restart(m *member, now int64) {
	t.restarts++
	if len(m.pending) > 0 && t.opts.Learn {
		t.pred.positive(m.pending)
	}
	m.pending = nil
	m.win.reset()
	m.tr.reset()
	m.pauseMem = 0
	m.seq = 0
}

// expected returns the instance's heartbeat interval in ms: announced,
// else measured, else the default.
func (m *member) expected(def time.Duration) float64 {
	if m.interval > 0 {
		return m.interval
	}
	if m.win.len() > 0 {
		return m.win.mean()
	}
	return float64(def) / 1e6
}

// schedule turns the instance's statistics into its suspect and dead
// deadlines. Dead when phi(silence) >= threshold, where phi is computed
// Akka-style over inter-arrival times with the observed mean shifted by the
// tolerated pause:
//
//	tolerance = mean + pause
//	pause     = clamp(PauseIntervals × interval × quality multiplier,
//	                  PauseMemoryMargin × recent longest silence − mean,
//	                  MaxPauseFactor × the first term)
//	sd        = max(observed sd, MinStdDevFraction × interval)
//
// Suspect when the silence passes SuspectFraction of the pause.
func (t *table) schedule(m *member) {
	interval := m.expected(t.opts.DefaultInterval)
	mean, sd := m.win.mean(), m.win.stdDev()
	if m.win.len() < 3 {
		// Too few samples to trust: Akka's bootstrap, a quarter interval.
		mean, sd = interval, interval/4
	}
	sd = max(sd, t.opts.MinStdDevFraction*interval)
	base := t.opts.PauseIntervals * interval * m.path.quality.Multiplier()
	pause := max(base, t.opts.PauseMemoryMargin*m.pauseMem-mean)
	pause = min(pause, base*t.opts.MaxPauseFactor)
	m.tolerance, m.sd = mean+pause, sd
	margin := t.zDead * sd
	m.deadAt = m.last + int64((mean+pause+margin)*1e6)
	m.suspectAt = m.last + int64((mean+t.opts.SuspectFraction*pause+margin)*1e6)
}

// phi returns the member's suspicion level at now.
func (m *member) phi(now int64) float64 {
	if m.state == Left || m.sd == 0 {
		return 0
	}
	p := Phi(float64(now-m.last)/1e6, m.tolerance, m.sd)
	if math.IsInf(p, 0) || math.IsNaN(p) || p > maxPhi {
		return maxPhi
	}
	return math.Round(p*1000) / 1000
}

func (t *table) setState(m *member, s State, now int64) {
	if m.state == s {
		return
	}
	if s == Dead {
		m.deadSince = now
		if t.opts.Learn {
			m.pending = m.tr.drain()
		}
	}
	m.state, m.since = s, now
}

// observeRTT records a probe's round trip (or its timeout) for key.
func (t *table) observeRTT(key string, rtt time.Duration) {
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

// noProbe stops probing key until until (it answers no PING).
func (t *table) noProbe(key string, until int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.members[key]; m != nil {
		m.probeAfter = until
	}
}

// probeTargets returns up to n keys of alive instances due for a probe,
// round robin.
func (t *table) probeTargets(n int, now int64) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for i := 0; i < len(t.list) && len(out) < n; i++ {
		t.cursor = (t.cursor + 1) % len(t.list)
		m := t.list[t.cursor]
		if m.state == Alive && now >= m.probeAfter {
			out = append(out, m.key)
		}
	}
	return out
}

// tickResult is what one evaluation produced for the active detector to
// publish.
type tickResult struct {
	transitions []Transition
	writes      []Member
	deletes     []string
	counts      map[State]int
}

// tick moves instances whose deadlines passed to suspect or dead, confirms
// deaths for training, forgets long-gone instances, and, when active,
// derives the transitions to publish (every member whose state differs
// from what MEMBERS holds) and the records to write: all transitions, then
// refreshes that are due, at most budget of them.
func (t *table) tick(now int64, active bool, budget int) tickResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	res := tickResult{counts: make(map[State]int, 4)}
	for i := 0; i < len(t.list); i++ {
		m := t.list[i]
		switch m.state {
		case Alive, Suspect:
			if now >= m.deadAt {
				t.setState(m, Dead, now)
			} else if now >= m.suspectAt {
				t.setState(m, Suspect, now)
			} else if m.state == Suspect {
				t.setState(m, Alive, now) // deadline moved (better path)
			}
		case Dead, Left:
			if now-m.since >= int64(t.opts.ForgetAfter) {
				if active && m.published != "" {
					res.deletes = append(res.deletes, m.key)
				}
				t.remove(m)
				i--
				continue
			}
		}
		if m.state == Dead && m.pending != nil && now-m.deadSince >= int64(t.opts.ConfirmDeath) {
			t.pred.positive(m.pending)
			m.pending = nil
		}
		res.counts[m.state]++
		if !active {
			continue
		}
		switch {
		case m.state != m.published:
			res.transitions = append(res.transitions, Transition{
				Member: t.record(m, now), Previous: m.published, At: t.wall(now), seq: m.seq,
			})
			res.writes = append(res.writes, res.transitions[len(res.transitions)-1].Member)
			t.wrote(m, now)
			m.published = m.state
		case budget > 0 && (m.state == Alive || m.state == Suspect) && t.writeDue(m, now):
			res.writes = append(res.writes, t.record(m, now))
			t.wrote(m, now)
			budget--
		}
	}
	return res
}

// writeDue reports whether an unchanged member's record should be
// rewritten: its refresh is due, or its quality class or failure
// probability moved a lot and the last write is a second old.
func (t *table) writeDue(m *member, now int64) bool {
	if now >= m.nextWrite {
		return true
	}
	if now-m.lastWrite < int64(time.Second) {
		return false
	}
	return m.path.quality != m.wroteQ || math.Abs(m.prob-m.wroteProb) >= 0.2
}

func (t *table) wrote(m *member, now int64) {
	m.lastWrite = now
	m.nextWrite = now + int64(t.opts.RefreshInterval)
	m.wroteQ, m.wroteProb = m.path.quality, m.prob
}

func (t *table) record(m *member, now int64) Member {
	r := Member{
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

// adopt takes in a record read from MEMBERS. An instance this detector
// has not heard from is adopted with the recorded state, as if last heard
// now, so an instance that never heartbeats again is still declared dead.
// While standby (not active), the record is what MEMBERS holds, so it
// becomes the member's published state.
func (t *table) adopt(rec Member, now int64, active bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := rec.Key()
	m := t.members[key]
	if m == nil {
		if !validToken(rec.Service) || !validToken(rec.Instance) {
			return
		}
		m = &member{key: key, svc: rec.Service, inst: rec.Instance, win: newWindow(t.opts.WindowSize),
			state: rec.State, published: rec.State, since: now, last: now, deadSince: now}
		m.path.quality = rec.Quality
		m.prob = rec.FailureProbability
		m.nextWrite = now + t.spread()
		t.add(m)
		t.schedule(m)
		return
	}
	if !active {
		m.published = rec.State
	}
}

// forget drops what MEMBERS no longer holds (a deleted key) from the
// published view.
func (t *table) forget(key string, active bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.members[key]; m != nil && !active {
		m.published = ""
	}
}

// snapshot returns the current records, sorted by key, of members whose
// service (when svc is set) and state (when state is set) match.
func (t *table) snapshot(now int64, svc string, state State) []Member {
	t.mu.Lock()
	out := make([]Member, 0, len(t.list))
	for _, m := range t.list {
		if (svc == "" || m.svc == svc) && (state == "" || m.state == state) {
			out = append(out, t.record(m, now))
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// stateOf returns the member's state, for tests and the simulation.
func (t *table) stateOf(key string) (State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.members[key]
	if m == nil {
		return "", false
	}
	return m.state, true
}

// modelStats reports what the predictor learned from.
func (t *table) modelStats() (positives, negatives int64, weights map[string]float64, bias float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, b := t.pred.weights()
	return t.pred.positives, t.pred.negatives, w, b
}

// probability returns the member's current failure probability, for the
// simulation.
func (t *table) probability(key string) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.members[key]; m != nil {
		return m.prob
	}
	return 0
}
