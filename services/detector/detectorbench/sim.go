package detectorbench

import (
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

// Scenario names a kind of trace.
type Scenario string

// Scenarios.
const (
	// Steady: regular heartbeats with a little jitter; some instances crash.
	Steady Scenario = "steady"
	// Pauses: every instance stalls now and then for several intervals, as
	// a stop-the-world GC does; some instances crash.
	Pauses Scenario = "pauses"
	// Degrading: the network worsens over the trace (delay, jitter, loss
	// and round trip grow, more on some paths than others); some crash.
	Degrading Scenario = "degrading"
	// Crashes: most instances crash, half of them restart after a few
	// seconds as a new process (sequence numbers restart).
	Crashes Scenario = "crashes"
	// SlowDeaths: some instances degrade over tens of heartbeats (load,
	// latency, errors climb, heartbeats get late) and then die; healthy
	// instances have busy spells that pass.
	SlowDeaths Scenario = "slow-deaths"
)

// Scenarios lists every scenario, in report order.
var Scenarios = []Scenario{Steady, Pauses, Degrading, Crashes, SlowDeaths}

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
type incarnation struct {
	start, end int64
}

// simInstance is one instance of a trace.
type simInstance struct {
	key   string
	beats []simBeat // in arrival order
	lives []incarnation
	slow  bool // dies a slow death (its deaths are the predictor's positives)
	// path gives the network's round trip at a time.
	rtt func(t int64) time.Duration
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

// trace is a generated fleet.
type trace struct {
	scenario  Scenario
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

// generateTrace builds the trace for a scenario.
func generateTrace(sc Scenario, opts TraceOptions) *trace {
	seed := opts.Seed*1_000_003 + uint64(slices.Index(Scenarios, sc)+1)
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), opts: opts, interval: float64(opts.Interval)}
	tr := &trace{scenario: sc, opts: opts}
	dur := int64(opts.Duration)
	for i := range opts.Instances {
		in := &simInstance{key: "sim.i" + itoa(i)}
		severity := 0.5 + g.rng.Float64() // how bad this path gets
		net := func(t int64) network { return network{delayMean: 0.5, rttMS: 0.4} }
		if sc == Degrading {
			net = func(t int64) network {
				x := float64(t) / float64(dur) * severity
				return network{delayMean: 0.5 + 60*x, loss: 0.12 * x, rttMS: 0.4 + 40*x}
			}
		}
		in.rtt = func(t int64) time.Duration { return time.Duration(net(t).rttMS * 1e6) }

		pauses := sc == Pauses
		var deathAt int64 = -1
		crash := func(p float64) {
			if g.rng.Float64() < p {
				deathAt = int64((0.2 + 0.7*g.rng.Float64()) * float64(dur))
			}
		}
		switch sc {
		case Steady, Degrading:
			crash(0.3)
		case Pauses:
			crash(0.2)
		case Crashes:
			crash(0.6)
		case SlowDeaths:
			if g.rng.Float64() < 0.3 {
				in.slow = true
				deathAt = int64((0.3 + 0.65*g.rng.Float64()) * float64(dur))
			} else {
				crash(0.1)
			}
		}
		start := int64(g.rng.Float64() * g.interval)
		var seq uint64
		for {
			end := deathAt
			life := incarnation{start: start, end: end}
			in.lives = append(in.lives, life)
			g.life(in, life, &seq, net, pauses, dur)
			if end < 0 || sc != Crashes || g.rng.Float64() < 0.5 {
				break
			}
			// Restart as a new process after a few seconds; it may crash again.
			start = end + int64((1+4*g.rng.Float64())*float64(time.Second))
			if start >= dur {
				break
			}
			seq = 0
			deathAt = -1
			if g.rng.Float64() < 0.3 {
				deathAt = start + int64(g.rng.Float64()*float64(dur-start))
			}
		}
		slices.SortStableFunc(in.beats, func(a, b simBeat) int { return cmpInt64(a.at, b.at) })
		tr.instances = append(tr.instances, in)
	}
	return tr
}

// life generates the heartbeats of one incarnation.
func (g *generator) life(in *simInstance, life incarnation, seq *uint64, net func(int64) network, pauses bool, dur int64) {
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
	nextPause := int64(-1)
	if pauses {
		nextPause = life.start + int64(g.rng.ExpFloat64()*8*float64(time.Second))
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
		gcSpike := false
		if nextPause >= 0 && t >= nextPause {
			// Stop the world for 2-6 intervals; the ticker's pending tick
			// fires on resume, then the grid continues.
			pause := int64((2 + 4*g.rng.Float64()) * g.interval)
			send = nextPause + pause
			for t+int64(g.interval) <= send {
				t += int64(g.interval)
			}
			nextPause = send + int64(g.rng.ExpFloat64()*8*float64(time.Second))
			gcSpike = true
		}
		if send >= end {
			break
		}
		if busy == 0 && g.rng.Float64() < 0.003 {
			busy = 10 + g.rng.IntN(30)
		}
		*seq++
		l := g.load(p, ramp, busy > 0, gcSpike)
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

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
