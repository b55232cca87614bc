package detectorbench

import (
	"cmp"
	"math"
	"time"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/detector"
	"github.com/platform/platform/services/detector/accrual"
)

// simDetector is what the simulation drives.
type simDetector interface {
	heartbeat(i int, now int64, l accrual.Load)
	// tick evaluates at now: probe asks instance i's process, as a NATS
	// request would; dead reports every instance newly declared dead.
	tick(now int64, probe func(i int) probeAnswer, dead func(i int))
}

// probeAnswer is what a request to an instance's micro service gets.
type probeAnswer struct {
	// kind: answered, no answer (a stalled process, a lost host: the
	// request times out) or no responders (the process's connection
	// closed: the server says so at once).
	kind probeKind
	rtt  time.Duration
}

type probeKind int

const (
	probeAnswered probeKind = iota
	probeTimeout
	probeNoResponders
)

// ours adapts the membership table to the simulation, probing as the
// detector service does: each alive instance every ProbeInterval, and a
// late one at once.
type ours struct {
	tab          *accrual.Table
	keys         []string
	index        map[string]int
	probe        time.Duration
	probeTimeout time.Duration
	next         []int64
	// timeouts are probes without an answer: the detector learns so only
	// when ProbeTimeout has passed.
	timeouts []pendingProbe
}

type pendingProbe struct {
	i  int
	at int64
}

// newOurs returns our detector for n instances; with a model, it scores
// with that model and learns nothing.
func newOurs(opts EvalOptions, n int, model *accrual.Model) (*ours, error) {
	o := detector.DefaultOptions()
	if opts.Detector != nil {
		o = *opts.Detector
	}
	if o.Seed == 0 {
		o.Seed = opts.Trace.Seed
	}
	if model != nil {
		o.NoLearn = true
	}
	tab, err := accrual.NewTable(o.Options, time.Unix(1_700_000_000, 0))
	if err != nil {
		return nil, err
	}
	if model != nil {
		if err := tab.SetModel(*model); err != nil {
			return nil, err
		}
	}
	d := &ours{tab: tab, index: make(map[string]int, n),
		probe:        cmp.Or(o.ProbeInterval, detector.DefaultOptions().ProbeInterval),
		probeTimeout: cmp.Or(o.ProbeTimeout, detector.DefaultOptions().ProbeTimeout)}
	for i := range n {
		k := "sim.i" + itoa(i)
		d.keys = append(d.keys, k)
		d.index[k] = i
	}
	d.next = make([]int64, n)
	return d, nil
}

func (d *ours) heartbeat(i int, now int64, l accrual.Load) {
	d.tab.Heartbeat("sim", "i"+itoa(i), l, time.Duration(now))
}

// ask probes instance i and tells the table, as the service's probe does.
func (d *ours) ask(i int, now int64, probe func(i int) probeAnswer) {
	switch a := probe(i); a.kind {
	case probeAnswered:
		d.tab.ObserveRTT(d.keys[i], a.rtt)
	case probeTimeout:
		d.timeouts = append(d.timeouts, pendingProbe{i: i, at: now + int64(d.probeTimeout)})
	case probeNoResponders:
		d.tab.Gone(d.keys[i], time.Duration(now))
	}
}

func (d *ours) tick(now int64, probe func(i int) probeAnswer, dead func(i int)) {
	for len(d.timeouts) > 0 && d.timeouts[0].at <= now {
		d.tab.ObserveRTT(d.keys[d.timeouts[0].i], d.probeTimeout)
		d.timeouts = d.timeouts[1:]
	}
	if d.probe > 0 {
		for i, k := range d.keys {
			if now < d.next[i] {
				continue
			}
			d.next[i] = now + int64(d.probe)
			if st, ok := d.tab.State(k); ok && st == membership.Alive {
				d.ask(i, now, probe)
			}
		}
		for _, k := range d.tab.LateTargets(time.Duration(now)) {
			d.ask(d.index[k], now, probe)
		}
	}
	res := d.tab.Tick(time.Duration(now), true, 0)
	for _, t := range res.Transitions {
		if t.State == membership.Dead {
			dead(d.index[t.Key()])
		}
	}
}

// fixed declares an instance dead after a fixed silence.
type fixed struct {
	timeout int64
	deadAt  []int64
	dead    []bool
}

func newFixed(timeout time.Duration, n int) *fixed {
	f := &fixed{timeout: int64(timeout), deadAt: make([]int64, n), dead: make([]bool, n)}
	for i := range f.deadAt {
		f.deadAt[i] = math.MaxInt64
	}
	return f
}

func (f *fixed) heartbeat(i int, now int64, _ accrual.Load) {
	f.deadAt[i], f.dead[i] = now+f.timeout, false
}

func (f *fixed) tick(now int64, _ func(int) probeAnswer, dead func(i int)) {
	for i, at := range f.deadAt {
		if !f.dead[i] && now >= at {
			f.dead[i] = true
			dead(i)
		}
	}
}

// akkaConfig is phi accrual as Akka cluster computes it, its constants
// given relative to the heartbeat interval so that they mean at 100 ms
// what Akka's defaults mean at 1 s (threshold 8, acceptable pause 3
// intervals, minimum deviation 0.1 interval, first estimate one interval
// with a quarter interval of deviation, 1000 samples).
type akkaConfig struct {
	threshold    float64
	pause        float64 // intervals
	minStdDev    float64 // intervals
	windowLength int
}

// akka is phi accrual with an akkaConfig.
type akka struct {
	fixed
	cfg      akkaConfig
	interval float64 // ms
	wins     []accrual.Window
	last     []int64
	z        float64
}

func newAkka(cfg akkaConfig, interval time.Duration, n int) *akka {
	return &akka{
		fixed: *newFixed(0, n), cfg: cfg, interval: float64(interval) / 1e6,
		wins: make([]accrual.Window, n), last: make([]int64, n), z: accrual.PhiZ(cfg.threshold),
	}
}

func (a *akka) heartbeat(i int, now int64, _ accrual.Load) {
	w := &a.wins[i]
	if w.Len() == 0 {
		*w = accrual.NewWindow(a.cfg.windowLength)
		w.Add(a.interval * 0.75)
		w.Add(a.interval * 1.25)
	} else {
		w.Add(float64(now-a.last[i]) / 1e6)
	}
	a.last[i] = now
	sd := max(w.StdDev(), a.cfg.minStdDev*a.interval)
	a.deadAt[i] = now + int64((w.Mean()+a.cfg.pause*a.interval+a.z*sd)*1e6)
	a.dead[i] = false
}
