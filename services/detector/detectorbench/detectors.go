package detectorbench

import (
	"math"
	"time"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/detector"
	"github.com/platform/platform/services/detector/accrual"
)

// simDetector is what the simulation drives.
type simDetector interface {
	heartbeat(i int, now int64, l accrual.Load)
	rtt(i int, now int64, rtt time.Duration, up bool)
	// tick reports every instance newly declared dead.
	tick(now int64, dead func(i int))
}

// ours adapts the membership table to the simulation, probing as the
// detector service does.
type ours struct {
	tab   *accrual.Table
	keys  []string
	index map[string]int
	probe time.Duration
	next  []int64
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
	probe := o.ProbeInterval
	if probe == 0 {
		probe = detector.DefaultOptions().ProbeInterval
	}
	d := &ours{tab: tab, index: make(map[string]int, n), probe: probe}
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

func (d *ours) rtt(i int, now int64, rtt time.Duration, up bool) {
	if d.probe <= 0 || now < d.next[i] {
		return
	}
	d.next[i] = now + int64(d.probe)
	if st, ok := d.tab.State(d.keys[i]); !ok || st != membership.Alive {
		return
	}
	if !up {
		// A crashed micro service answers "no responders" at once.
		d.tab.NoProbe(d.keys[i], time.Duration(now)+10*time.Minute)
		return
	}
	d.tab.ObserveRTT(d.keys[i], rtt)
}

func (d *ours) tick(now int64, dead func(i int)) {
	res := d.tab.Tick(time.Duration(now), true, 0)
	for _, t := range res.Transitions {
		if t.State == membership.Dead {
			dead(d.index[t.Key()])
		}
	}
}

// fixed declares an instance dead after three intervals of silence.
type fixed struct {
	timeout int64
	deadAt  []int64
	dead    []bool
}

func newFixed(interval time.Duration, n int) *fixed {
	f := &fixed{timeout: int64(3 * interval), deadAt: make([]int64, n), dead: make([]bool, n)}
	for i := range f.deadAt {
		f.deadAt[i] = math.MaxInt64
	}
	return f
}

func (f *fixed) heartbeat(i int, now int64, _ accrual.Load) {
	f.deadAt[i], f.dead[i] = now+f.timeout, false
}

func (f *fixed) rtt(int, int64, time.Duration, bool) {}

func (f *fixed) tick(now int64, dead func(i int)) {
	for i, at := range f.deadAt {
		if !f.dead[i] && now >= at {
			f.dead[i] = true
			dead(i)
		}
	}
}

// akka is phi accrual with Akka cluster's defaults: threshold 8, 1000
// samples, min std deviation 100 ms, acceptable heartbeat pause 3 s, first
// heartbeat estimate 1 s (history seeded with 750 and 1250 ms).
type akka struct {
	fixed
	wins []accrual.Window
	last []int64
	z    float64
}

func newAkka(n int) *akka {
	a := &akka{fixed: *newFixed(0, n), wins: make([]accrual.Window, n), last: make([]int64, n), z: accrual.PhiZ(8)}
	return a
}

func (a *akka) heartbeat(i int, now int64, _ accrual.Load) {
	w := &a.wins[i]
	if w.Len() == 0 {
		*w = accrual.NewWindow(1000)
		w.Add(750)
		w.Add(1250)
	} else {
		w.Add(float64(now-a.last[i]) / 1e6)
	}
	a.last[i] = now
	sd := max(w.StdDev(), 100)
	a.deadAt[i] = now + int64((w.Mean()+3000+a.z*sd)*1e6)
	a.dead[i] = false
}
