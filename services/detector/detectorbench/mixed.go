package detectorbench

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Class is the behaviour of one instance in a heterogeneous fleet. Every
// timing below is in milliseconds of wall time, never in the detector's
// units: a GC pause is as long as it is, whatever the heartbeat interval
// or the detector's tolerated pause.
type Class string

// Classes of generated instances, and of recorded ones (named by the
// recorder after what was done to the process).
const (
	// ClassQuiet: a regular sender on a clean path, 1 ms of send jitter
	// and sub-millisecond delay.
	ClassQuiet Class = "quiet"
	// ClassGC: stop-the-world pauses every 5 s on average whose lengths
	// follow a Pareto law (150 ms minimum, shape 1.3, cut at 3 s): most are
	// short, a few last 20 or more 100 ms intervals.
	ClassGC Class = "gc"
	// ClassNetwork: a jittery, lossy path: exponential delay (mean 10 ms),
	// 2% of heartbeats delayed 50-500 ms more, 2% lost, and loss bursts
	// (a Gilbert-Elliott channel, bursts of 4 heartbeats on average).
	ClassNetwork Class = "network"
	// ClassDegrading: heartbeats get later and lossier over the 5-15 s
	// before the instance dies (most of them do).
	ClassDegrading Class = "degrading"
)

// classMix is the share of each class in a mixed fleet, and the chance
// that an instance of the class dies during the trace.
var classMix = []struct {
	class Class
	share float64
	dies  float64
}{
	{ClassQuiet, 0.40, 0.3},
	{ClassGC, 0.20, 0.3},
	{ClassNetwork, 0.25, 0.3},
	{ClassDegrading, 0.15, 0.85},
}

// hostLostShare is the share of deaths that are a lost host (the
// connection stays open, silent) rather than a crash (it closes).
const hostLostShare = 0.3

// Pause law of ClassGC, in ms.
const (
	gcPauseMin   = 150
	gcPauseShape = 1.3
	gcPauseMax   = 3000
	gcPauseEvery = 5000 // mean time between pauses
)

// generateMixed builds a heterogeneous fleet: each instance draws its
// class from classMix, and perhaps a death at a random time.
func generateMixed(opts TraceOptions) *trace {
	seed := opts.Seed*1_000_003 + 11
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	g := &generator{rng: rng, opts: opts, interval: float64(opts.Interval)}
	tr := &trace{name: string(Mixed), opts: opts}
	dur := int64(opts.Duration)
	for i := range opts.Instances {
		x := rng.Float64()
		k := 0
		for ; k < len(classMix)-1 && x >= classMix[k].share; k++ {
			x -= classMix[k].share
		}
		c := classMix[k]
		in := &simInstance{key: "sim.i" + itoa(i), class: c.class, slow: c.class == ClassDegrading}
		in.rtt = func(int64) time.Duration { return 400 * time.Microsecond }
		life := incarnation{start: int64(rng.Float64() * g.interval), end: -1}
		if rng.Float64() < c.dies {
			// Deaths fall after the warm-up and early enough to be found.
			from, to := min(int64(warmUp), dur/2), dur-int64(6*time.Second)
			life.end = from + int64(rng.Float64()*float64(max(to-from, 0)))
			life.hostLost = rng.Float64() < hostLostShare
		}
		in.lives = []incarnation{life}
		g.mixedLife(in, life, dur)
		slices.SortStableFunc(in.beats, func(a, b simBeat) int { return cmp.Compare(a.at, b.at) })
		tr.instances = append(tr.instances, in)
	}
	return tr
}

// mixedLife generates one instance's heartbeats by its class.
func (g *generator) mixedLife(in *simInstance, life incarnation, dur int64) {
	rng := g.rng
	iv := int64(g.interval)
	p := profile{
		cpu: 0.1 + 0.7*rng.Float64(), mem: 0.2 + 0.55*rng.Float64(),
		lat: 2 + 38*rng.Float64(), p99x: 2 + 3*rng.Float64(),
		err: 0.01 * rng.Float64(), rps: 20 + 480*rng.Float64(),
	}
	end := life.end
	if end < 0 || end > dur {
		end = dur
	}
	ms := func(x float64) int64 { return int64(x * 1e6) }
	nextPause := int64(-1)
	if in.class == ClassGC {
		nextPause = life.start + ms(rng.ExpFloat64()*gcPauseEvery)
	}
	ramp := int64(0)
	if in.class == ClassDegrading && life.end >= 0 {
		ramp = ms(5000 + 10000*rng.Float64())
	}
	bad := false // the Gilbert-Elliott channel's state
	var seq uint64
	for t := life.start; t < end; t += iv {
		send := t + ms(rng.NormFloat64())
		gc := false
		if nextPause >= 0 && t >= nextPause {
			// The process stops; on resume the ticker's pending tick fires
			// at once, then the grid continues.
			pause := gcPauseMin * math.Pow(1-rng.Float64(), -1/gcPauseShape)
			send = nextPause + ms(min(pause, gcPauseMax))
			in.stalls = append(in.stalls, [2]int64{nextPause, send})
			for t+iv <= send {
				t += iv
			}
			nextPause = send + ms(rng.ExpFloat64()*gcPauseEvery)
			gc = true
		}
		r := 0.0
		if ramp > 0 && end-t < ramp {
			r = 1 - float64(end-t)/float64(ramp)
			send += ms(math.Abs(rng.NormFloat64()) * r * 0.5 * g.interval / 1e6)
		}
		if send >= end {
			break
		}
		seq++
		delay := 0.3 + rng.ExpFloat64()*0.5
		lost := false
		switch in.class {
		case ClassNetwork:
			delay = 1 + rng.ExpFloat64()*10
			if rng.Float64() < 0.02 {
				delay += 50 + 450*rng.Float64()
			}
			if bad {
				bad = rng.Float64() >= 0.25
			} else {
				bad = rng.Float64() < 0.01
			}
			lost = bad || rng.Float64() < 0.02
		case ClassDegrading:
			delay += r * rng.ExpFloat64() * 40
			lost = rng.Float64() < 0.3*r
		}
		if lost {
			continue
		}
		l := g.load(p, r, false, gc)
		l.Seq, l.IntervalMS = seq, iv/1e6
		in.beats = append(in.beats, simBeat{at: send + ms(delay), load: l})
	}
}
