package accrual

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/platform/platform/membership"
)

// Load is what one heartbeat reports: its sequence, the sender's interval
// and load figures, and whether the sender is leaving. It has the fields
// of the heartbeat body (service.Load) and converts from it.
type Load struct {
	Seq        uint64
	IntervalMS int64
	CPU        float64
	Mem        float64
	LatencyMS  float64
	P99MS      float64
	ErrorRate  float64
	RPS        float64
	InFlight   int64
	Leaving    bool
}

// maxPhi caps the published phi, which grows without bound in silence.
const maxPhi = 1000

// member is one instance's detection state.
type member struct {
	key, svc, inst string
	idx            int // position in Table.list

	state     membership.State
	published membership.State // the state MEMBERS holds, as far as this table knows
	since     int64            // when state last changed
	last      int64            // arrival of the last heartbeat
	seq       uint64
	interval  float64 // announced interval, ms; 0: none

	win     Window
	path    pathStats
	staller bool  // recovered from a silence of StallIntervals or more
	joined  int64 // first heartbeat of this process

	// Deadlines, from the last heartbeat: suspect and dead when passed.
	suspectAt, deadAt int64
	// tolerance and sd parameterize phi: phi(elapsed; tolerance, sd).
	tolerance, sd float64

	tr      trend
	pending []features // heartbeats before a death not yet confirmed
	prob    float64

	nextWrite  int64
	lastWrite  int64
	wroteQ     membership.Quality
	wroteProb  float64
	probeAfter int64
	answered   bool  // answered a probe: a micro service instance
	lateProbed int64 // when last probed for being late
	deadSince  int64
	heartbeats uint64
}

// Table is the membership table: every instance's detection state, the
// shared failure predictor, and the derivation of transitions and record
// writes. It is pure: it does no I/O, and time is passed in by the caller
// as the time elapsed since the table's epoch, on a monotonic clock or a
// simulated one. Records carry wall times: the epoch plus that time.
//
// Instances are named by service and instance, each a valid member token
// (streams.ValidMemberToken: what a heartbeat subject parses into); the
// caller checks them. A Table is safe for concurrent use.
type Table struct {
	opts  Options
	epoch time.Time

	mu      sync.Mutex
	members map[string]*member
	list    []*member
	cursor  int // probe round robin
	pred    *predictor
	rng     *rand.Rand
	zDead   float64

	// fleetPause is the longest silence any member recovered from, in
	// its intervals, as of fleetAt; it halves every PauseMemoryHalfLife.
	fleetPause float64
	fleetAt    int64

	reordered uint64
	restarts  uint64
}

// NewTable returns an empty table. Zero fields of opts take their
// DefaultOptions value; an error says which settings are out of range.
func NewTable(opts Options, epoch time.Time) (*Table, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &Table{
		opts:    opts,
		epoch:   epoch,
		members: make(map[string]*member),
		pred:    newPredictor(opts.LearningRate, opts.NegativeSampling, rng),
		rng:     rng,
		zDead:   PhiZ(opts.PhiThreshold),
	}, nil
}

// Options returns the table's options, zero fields filled in.
func (t *Table) Options() Options { return t.opts }

func (t *Table) wall(ns int64) time.Time { return t.epoch.Add(time.Duration(ns)) }

// Heartbeat records one heartbeat from svc/inst received at now. An
// instance heard from for the first time joins the table; a heartbeat
// whose sequence is not past the last one is counted as reordered and
// otherwise ignored; a sequence that starts again is a restart.
func (t *Table) Heartbeat(svc, inst string, l Load, now time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := membership.Key(svc, inst)
	m := t.members[key]
	ns := int64(now)
	if m == nil {
		m = &member{key: key, svc: svc, inst: inst, win: NewWindow(t.opts.WindowSize), since: ns, joined: ns}
		m.nextWrite = ns + t.spread()
		t.add(m)
	}
	t.observe(m, l, ns)
}

func (t *Table) add(m *member) {
	m.idx = len(t.list)
	t.list = append(t.list, m)
	t.members[m.key] = m
}

func (t *Table) remove(m *member) {
	last := t.list[len(t.list)-1]
	t.list[m.idx] = last
	last.idx = m.idx
	t.list = t.list[:len(t.list)-1]
	delete(t.members, m.key)
}

// spread returns a random offset within one refresh interval, so refresh
// writes of instances that appeared together do not bunch up.
func (t *Table) spread() int64 {
	return t.rng.Int64N(int64(t.opts.RefreshInterval))
}

func (t *Table) observe(m *member, l Load, now int64) {
	first := m.heartbeats == 0
	m.heartbeats++
	if l.IntervalMS > 0 {
		iv := float64(l.IntervalMS)
		if m.interval > 0 && math.Abs(iv-m.interval) > 0.2*m.interval {
			m.win.Reset() // the sender changed its pace: old gaps mislead
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
		if m.state != membership.Dead {
			m.win.Add(gap)
			m.path.observeGap(gap, interval)
			t.recovered(m, gap, interval, now)
		} else if contiguous {
			t.recovered(m, gap, interval, now)
		}
		interval = m.expected(t.opts.DefaultInterval)
	}
	m.last = now
	m.path.classify()

	if l.Leaving {
		m.pending = nil
		m.tr.reset()
		t.setState(m, membership.Left, now)
		return
	}
	if m.state == membership.Dead {
		// Back from the dead without a restart: the death was a stall,
		// nothing to learn from it.
		m.pending = nil
	}
	t.setState(m, membership.Alive, now)

	lateness := 0.0
	if !first && interval > 0 {
		lateness = (gap - interval) / interval
	}
	f := m.tr.observe(l, lateness, m.path.jitter)
	learn := !t.opts.NoLearn
	if learn {
		t.pred.observe(&f)
	}
	m.prob = t.pred.probability(&f)
	if old, evicted := m.tr.push(f, t.opts.PredictionHorizon); evicted && learn {
		t.pred.negative(&old)
	}
	t.schedule(m)
}

// recovered remembers a silence of gap ms that m came back from: in the
// fleet's pause memory, and as a sign that m stalls.
func (t *Table) recovered(m *member, gap, interval float64, now int64) {
	if interval <= 0 {
		return
	}
	g := gap / interval
	if g >= t.opts.StallIntervals {
		m.staller = true
	}
	t.fleetPause = max(t.fleetPauseAt(now), g)
	t.fleetAt = now
}

// fleetPauseAt returns the fleet's pause memory decayed to now.
func (t *Table) fleetPauseAt(now int64) float64 {
	if t.fleetPause == 0 || now <= t.fleetAt {
		return t.fleetPause
	}
	return t.fleetPause * math.Exp2(-float64(now-t.fleetAt)/float64(t.opts.PauseMemoryHalfLife))
}

// restart handles a heartbeat whose sequence started again: a new process
// under the same name. A pending death is now certain.
func (t *Table) restart(m *member, now int64) {
	t.restarts++
	if len(m.pending) > 0 && !t.opts.NoLearn {
		t.pred.positive(m.pending)
	}
	m.pending = nil
	m.win.Reset()
	m.tr.reset()
	m.seq = 0
	m.joined = now
}

// expected returns the instance's heartbeat interval in ms: announced,
// else measured, else the default.
func (m *member) expected(def time.Duration) float64 {
	if m.interval > 0 {
		return m.interval
	}
	if m.win.Len() > 0 {
		return m.win.Mean()
	}
	return float64(def) / 1e6
}

// schedule turns the instance's statistics into its suspect and dead
// deadlines. Dead when phi(silence) >= threshold, where phi is computed
// Akka-style over inter-arrival times with the observed mean shifted by the
// tolerated pause:
//
//	tolerance = mean + PauseIntervals × interval × quality multiplier
//	sd        = max(observed sd, MinStdDevFraction × interval)
//
// Suspect when the silence passes SuspectFraction of the pause. A member
// that stalls, or is too young to have shown whether it does, is dead no
// sooner than PauseMemoryMargin × the longest silence any member of the
// fleet recovered from: one instance sees too few of its own pauses to
// know how long the next will be, the fleet sees many. Only a member with
// a long clean record is held to its own tolerance. Deaths of processes
// whose connection closes are found sooner, by late probes (Gone).
func (t *Table) schedule(m *member) {
	interval := m.expected(t.opts.DefaultInterval)
	mean, sd := m.win.Mean(), m.win.StdDev()
	if m.win.Len() < 3 {
		// Too few samples to trust: Akka's bootstrap, a quarter interval.
		mean, sd = interval, interval/4
	}
	sd = max(sd, t.opts.MinStdDevFraction*interval)
	pause := t.opts.PauseIntervals * interval * multiplier(m.path.quality)
	m.tolerance, m.sd = mean+pause, sd
	margin := t.zDead * sd
	m.deadAt = m.last + int64((mean+pause+margin)*1e6)
	m.suspectAt = m.last + int64((mean+t.opts.SuspectFraction*pause+margin)*1e6)
	if m.staller || m.last-m.joined < int64(t.opts.TrustAfter) {
		fleet := t.opts.PauseMemoryMargin * t.fleetPauseAt(m.last) * interval
		if at := m.last + int64(fleet*1e6); at > m.deadAt {
			m.deadAt = at
			m.tolerance = fleet - margin
		}
	}
}

// phi returns the member's suspicion level at now.
func (m *member) phi(now int64) float64 {
	if m.state == membership.Left || m.sd == 0 {
		return 0
	}
	p := Phi(float64(now-m.last)/1e6, m.tolerance, m.sd)
	if math.IsInf(p, 0) || math.IsNaN(p) || p > maxPhi {
		return maxPhi
	}
	return math.Round(p*1000) / 1000
}

func (t *Table) setState(m *member, s membership.State, now int64) {
	if m.state == s {
		return
	}
	if s == membership.Dead {
		m.deadSince = now
		if !t.opts.NoLearn {
			m.pending = m.tr.drain()
		}
	}
	m.state, m.since = s, now
}

// Adopt takes in a record read from MEMBERS at now. An instance the table
// has not heard from is adopted with the recorded state, as if last heard
// now, so an instance that never heartbeats again is still declared dead.
// While standby (not active), the record is what MEMBERS holds, so it
// becomes the member's published state: Tick derives transitions from
// what differs.
func (t *Table) Adopt(rec membership.Member, now time.Duration, active bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := rec.Key()
	m := t.members[key]
	if m == nil {
		ns := int64(now)
		m = &member{key: key, svc: rec.Service, inst: rec.Instance, win: NewWindow(t.opts.WindowSize),
			state: rec.State, published: rec.State, since: ns, last: ns, deadSince: ns}
		m.path.quality = rec.Quality
		m.prob = rec.FailureProbability
		m.nextWrite = ns + t.spread()
		t.add(m)
		t.schedule(m)
		return
	}
	if !active {
		m.published = rec.State
	}
}

// Forget drops what MEMBERS no longer holds (a deleted key) from the
// published view, while standby.
func (t *Table) Forget(key string, active bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.members[key]; m != nil && !active {
		m.published = ""
	}
}

// Snapshot returns the current records at now, sorted by key, of members
// whose service (when svc is set) and state (when state is set) match.
func (t *Table) Snapshot(now time.Duration, svc string, state membership.State) []membership.Member {
	t.mu.Lock()
	out := make([]membership.Member, 0, len(t.list))
	for _, m := range t.list {
		if (svc == "" || m.svc == svc) && (state == "" || m.state == state) {
			out = append(out, t.record(m, int64(now)))
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b membership.Member) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// Detail is one member's record with the inter-arrival times its phi is
// computed from.
type Detail struct {
	Member membership.Member `json:"member"`
	// IntervalsMS is the member's window of heartbeat inter-arrival
	// times, oldest first (Options.WindowSize at most).
	IntervalsMS []float64 `json:"intervals_ms"`
	// MeanMS and StdDevMS are the window's mean and standard deviation.
	MeanMS   float64 `json:"mean_ms"`
	StdDevMS float64 `json:"stddev_ms"`
	// Since is when the member entered its state.
	Since time.Time `json:"since"`
}

// Detail returns the member with key at now, and whether the table knows
// it.
func (t *Table) Detail(key string, now time.Duration) (Detail, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.members[key]
	if m == nil {
		return Detail{}, false
	}
	return Detail{Member: t.record(m, int64(now)), IntervalsMS: m.win.Values(), MeanMS: m.win.Mean(),
		StdDevMS: m.win.StdDev(), Since: t.wall(m.since).UTC()}, true
}

// State returns the state of the member with key, and whether the table
// knows it.
func (t *Table) State(key string) (membership.State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.members[key]
	if m == nil {
		return "", false
	}
	return m.state, true
}

// Probability returns the failure probability of the member with key as
// of its last heartbeat (0 for an unknown key).
func (t *Table) Probability(key string) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.members[key]; m != nil {
		return m.prob
	}
	return 0
}

// Stats are counters of what a table has seen and what its predictor
// learned from.
type Stats struct {
	// Reordered counts heartbeats ignored as out of order or duplicated.
	Reordered uint64
	// Restarts counts heartbeats whose sequence started again.
	Restarts uint64
	// Positives and Negatives count the predictor's training examples.
	Positives, Negatives int64
	// Weights is the predictor's learned weight of each feature, by name;
	// Bias its intercept.
	Weights map[string]float64
	Bias    float64
}

// Stats returns the table's counters and the predictor's weights.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, b := t.pred.weights()
	return Stats{
		Reordered: t.reordered, Restarts: t.restarts,
		Positives: t.pred.positives, Negatives: t.pred.negatives,
		Weights: w, Bias: b,
	}
}

// Model is a copy of a table's failure predictor: what it learned and its
// feature scaling.
type Model struct{ p *predictor }

// Model returns a copy of the table's predictor.
func (t *Table) Model() Model {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Model{p: t.pred.clone(nil)}
}

// SetModel replaces the table's predictor with a copy of m, for instance
// to score instances with what another table learned (with NoLearn, the
// model stays as given).
func (t *Table) SetModel(m Model) error {
	if m.p == nil {
		return fmt.Errorf("set model: empty model")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pred = m.p.clone(t.rng)
	return nil
}
