package detectorbench

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/platform/platform/services/detector/accrual"
)

// The simulation generates heartbeat traces from a seed, so every detector
// is scored on exactly the same arrivals. A trace is a fleet of instances,
// each a list of incarnations (a process that starts, heartbeats and
// possibly dies), with the network between it and the detector.

// Scenario names a kind of generated trace.
type Scenario string

// Scenarios.
const (
	// Mixed: one fleet of heterogeneous instances (see Class), the trace
	// detectors are compared on.
	Mixed Scenario = "mixed"
	// SlowDeaths: some instances degrade over tens of heartbeats (load,
	// latency, errors climb, heartbeats get late) and then die; healthy
	// instances have busy spells that pass. The predictor is scored on it.
	SlowDeaths Scenario = "slow-deaths"
)

// TraceOptions size a generated trace.
type TraceOptions struct {
	// Instances is the fleet size.
	Instances int
	// Duration is the simulated time.
	Duration time.Duration
	// Interval is every instance's heartbeat interval.
	Interval time.Duration
	// Seed makes the trace; the same seed gives the same trace.
	Seed uint64
}

// simBeat is one heartbeat as it arrives at the detector.
type simBeat struct {
	at   int64 // arrival, ns since the trace start
	load accrual.Load
}

// incarnation is one process's life: [start, end); end < 0: lives on.
// A process that dies by a crash closes its connection (the server
// notices at once); a lost host (power, partition) just goes silent.
type incarnation struct {
	start, end int64
	hostLost   bool
}

// simInstance is one instance of a trace.
type simInstance struct {
	key   string
	class Class
	beats []simBeat // in arrival order
	lives []incarnation
	slow  bool // dies a slow death (its deaths are the predictor's positives)
	// stalls are when the process was stopped (GC, SIGSTOP): [start, end).
	stalls [][2]int64
	// path gives the network's round trip at a time.
	rtt func(t int64) time.Duration
}

// probe answers a request to the instance's micro service at t.
func (in *simInstance) probe(t int64) probeAnswer {
	for _, l := range in.lives {
		if t < l.start || (l.end >= 0 && t >= l.end) {
			continue
		}
		for _, s := range in.stalls {
			if t >= s[0] && t < s[1] {
				return probeAnswer{kind: probeTimeout}
			}
		}
		return probeAnswer{kind: probeAnswered, rtt: in.rtt(t)}
	}
	// Dead: the last life that ended tells how.
	for k := len(in.lives) - 1; k >= 0; k-- {
		if l := in.lives[k]; l.end >= 0 && t >= l.end {
			if l.hostLost {
				return probeAnswer{kind: probeTimeout}
			}
			break
		}
	}
	return probeAnswer{kind: probeNoResponders}
}

// aliveAt reports whether a process of the instance runs at t.
func (in *simInstance) aliveAt(t int64) bool {
	for _, l := range in.lives {
		if t >= l.start && (l.end < 0 || t < l.end) {
			return true
		}
	}
	return false
}

// trace is a fleet's heartbeats, generated or recorded.
type trace struct {
	name      string
	opts      TraceOptions
	instances []*simInstance
}

// profile is an instance's healthy load: its own levels, since a fleet is
// not uniform.
type profile struct {
	cpu, mem, lat, p99x, err, rps float64
}

// network describes one path at one moment.
type network struct {
	delayMean float64 // ms, exponential on top of a 0.5 ms base
	loss      float64
	rttMS     float64
}

type generator struct {
	rng      *rand.Rand
	opts     TraceOptions
	interval float64 // ns
}

// generateSlowDeaths builds a slow-deaths trace.
func generateSlowDeaths(opts TraceOptions) *trace {
	seed := opts.Seed*1_000_003 + 5
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), opts: opts, interval: float64(opts.Interval)}
	tr := &trace{name: string(SlowDeaths), opts: opts}
	dur := int64(opts.Duration)
	for i := range opts.Instances {
		in := &simInstance{key: "sim.i" + itoa(i), class: ClassQuiet}
		net := func(int64) network { return network{delayMean: 0.5, rttMS: 0.4} }
		in.rtt = func(t int64) time.Duration { return time.Duration(net(t).rttMS * 1e6) }
		var deathAt int64 = -1
		switch {
		case g.rng.Float64() < 0.3:
			in.slow, in.class = true, ClassDegrading
			deathAt = int64((0.3 + 0.65*g.rng.Float64()) * float64(dur))
		case g.rng.Float64() < 0.1:
			deathAt = int64((0.2 + 0.7*g.rng.Float64()) * float64(dur))
		}
		life := incarnation{start: int64(g.rng.Float64() * g.interval), end: deathAt}
		in.lives = append(in.lives, life)
		var seq uint64
		g.life(in, life, &seq, net, dur)
		slices.SortStableFunc(in.beats, func(a, b simBeat) int { return cmp.Compare(a.at, b.at) })
		tr.instances = append(tr.instances, in)
	}
	return tr
}

// life generates the heartbeats of one incarnation.
func (g *generator) life(in *simInstance, life incarnation, seq *uint64, net func(int64) network, dur int64) {
	p := profile{
		cpu: 0.1 + 0.7*g.rng.Float64(), mem: 0.2 + 0.55*g.rng.Float64(),
		lat: 2 + 38*g.rng.Float64(), p99x: 2 + 3*g.rng.Float64(),
		err: 0.01 * g.rng.Float64(), rps: 20 + 480*g.rng.Float64(),
	}
	end := life.end
	if end < 0 || end > dur {
		end = dur
	}
	slowSpan := int64(0)
	if in.slow && life.end >= 0 {
		slowSpan = int64((40 + 80*g.rng.Float64()) * g.interval)
	}
	busy := 0 // heartbeats left in a busy spell
	t := life.start
	for t < end {
		send := t + int64(g.rng.NormFloat64()*3e6)
		ramp := 0.0
		if slowSpan > 0 && end-t < slowSpan {
			ramp = 1 - float64(end-t)/float64(slowSpan)
			// A dying process is late more and more.
			send += int64(math.Abs(g.rng.NormFloat64()) * ramp * 30e6)
			if g.rng.Float64() < 0.05*ramp {
				send += int64(g.rng.Float64() * 2 * g.interval)
			}
		}
		if send >= end {
			break
		}
		if busy == 0 && g.rng.Float64() < 0.003 {
			busy = 10 + g.rng.IntN(30)
		}
		*seq++
		l := g.load(p, ramp, busy > 0, false)
		if busy > 0 {
			busy--
		}
		l.Seq = *seq
		l.IntervalMS = int64(g.interval / 1e6)
		n := net(send)
		if g.rng.Float64() >= n.loss {
			delay := 0.5 + g.rng.ExpFloat64()*n.delayMean
			in.beats = append(in.beats, simBeat{at: send + int64(delay*1e6), load: l})
		}
		t += int64(g.interval)
	}
}

// load returns one heartbeat's figures: the profile with noise, a busy
// spell, a GC spike, or ramp (0..1) of the way into a slow death.
func (g *generator) load(p profile, ramp float64, busy, gc bool) accrual.Load {
	noise := func(sd float64) float64 { return g.rng.NormFloat64() * sd }
	cpu, mem, lat, err, rps := p.cpu, p.mem, p.lat, p.err, p.rps
	p99 := lat * p.p99x
	if busy {
		cpu += 0.25
		lat *= 1.8
		p99 *= 2.5
		rps *= 1.6
	}
	if gc {
		p99 *= 3
		lat *= 1.5
	}
	if ramp > 0 {
		cpu += ramp * (0.97 - cpu)
		mem += ramp * (0.97 - mem)
		lat *= 1 + 4*ramp
		p99 *= math.Exp(ramp * math.Log(20))
		err += ramp * ramp * 0.3
		rps *= 1 - 0.5*ramp
	}
	clamp := func(x float64) float64 { return min(max(x, 0), 1) }
	l := accrual.Load{
		CPU:       clamp(cpu + noise(0.04)),
		Mem:       clamp(mem + noise(0.01)),
		LatencyMS: max(0.1, lat*(1+noise(0.15))),
		P99MS:     max(0.1, p99*(1+noise(0.25))),
		ErrorRate: clamp(err + math.Abs(noise(0.003))),
		RPS:       max(0, rps*(1+noise(0.1))),
	}
	l.InFlight = int64(l.RPS * l.LatencyMS / 1000)
	return l
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}
