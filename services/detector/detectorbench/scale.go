package detectorbench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"time"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/detector"
	"github.com/platform/platform/services/detector/accrual"
	"github.com/platform/platform/streams"
)

// ScaleOptions size the scale measurement.
type ScaleOptions struct {
	// Instances heartbeating (default 10,000).
	Instances int
	// Seconds of heartbeats to process (default 30).
	Seconds int
	// Interval of every instance's heartbeats (default 1 s).
	Interval time.Duration
	// Progress, when set, is called after each simulated second.
	Progress func()
}

// ScaleReport is what the scale measurement found.
type ScaleReport struct {
	Instances  int     `json:"instances"`
	Heartbeats int64   `json:"heartbeats"`
	Seconds    float64 `json:"simulated_seconds"`
	// CPUSeconds is the process CPU time spent, and Cores that divided by
	// the simulated seconds: the share of a core the detector needs to
	// keep up.
	CPUSeconds float64 `json:"cpu_seconds"`
	Cores      float64 `json:"cores"`
	// NsPerHeartbeat is CPU time per heartbeat, evaluation included.
	NsPerHeartbeat float64 `json:"ns_per_heartbeat"`
	// Writes and Transitions are what the active detector would send to
	// MEMBERS and DETECTOR per simulated second.
	WritesPerSec      float64 `json:"member_writes_per_sec"`
	TransitionsPerSec float64 `json:"transitions_per_sec"`
	WallSeconds       float64 `json:"wall_seconds"`
}

// MeasureScale drives the detector's heartbeat path (subject parsing,
// lenient decoding of a JSON body as service heartbeats send it, the
// table update, prediction) and its evaluation loop at the default tick,
// including encoding of every transition and MEMBERS record as the active
// detector would publish it, on a simulated clock as fast as it goes. The
// CPU time it takes per simulated second is the share of a core one
// detector needs. What it leaves out is the NATS client reading the
// socket (about a microsecond a message) and the server's work.
func MeasureScale(opts ScaleOptions) (ScaleReport, error) {
	if opts.Instances == 0 {
		opts.Instances = 10000
	}
	if opts.Seconds == 0 {
		opts.Seconds = 30
	}
	if opts.Interval == 0 {
		opts.Interval = time.Second
	}
	o := detector.DefaultOptions()
	o.Seed = 1
	tab, err := accrual.NewTable(o.Options, time.Now())
	if err != nil {
		return ScaleReport{}, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := opts.Instances
	subjects := make([]string, n)
	offsets := make([]time.Duration, n)
	for i := range n {
		subjects[i] = streams.HeartbeatSubject("platform-scale", "i"+itoa(i))
		offsets[i] = time.Duration(rng.Int64N(int64(opts.Interval)))
	}
	// Bodies are encoded before the clock starts: making them is the
	// senders' work, not the detector's.
	beatsPerSec := int(time.Second / opts.Interval)
	bodies := make([][]byte, opts.Seconds*beatsPerSec*n)
	for k := range bodies {
		i := k % n
		l := service.Load{
			Seq: uint64(k/n + 1), IntervalMS: opts.Interval.Milliseconds(),
			CPU: 0.2 + 0.3*rng.Float64(), Mem: 0.4 + 0.1*rng.Float64(), LatencyMS: 5 + 10*rng.Float64(),
			P99MS: 40 + 20*rng.Float64(), ErrorRate: 0.001 * rng.Float64(), RPS: 100 + 50*rng.Float64(), InFlight: int64(i % 7),
		}
		bodies[k], _ = json.Marshal(l)
	}
	runtime.GC()

	tick := o.EvalInterval
	budget := max(1, int(o.MaxWriteRate*o.EvalInterval.Seconds()))
	var writes, transitions int64
	start, cpu0 := time.Now(), processCPU()
	nextTick := tick
	for round := range opts.Seconds * beatsPerSec {
		base := time.Duration(round) * opts.Interval
		for i := range n {
			at := base + offsets[i]
			for nextTick <= at {
				res := tab.Tick(nextTick, true, budget)
				writes += int64(len(res.Writes))
				transitions += int64(len(res.Transitions))
				if _, err := detector.Messages(res); err != nil {
					return ScaleReport{}, fmt.Errorf("scale: %w", err)
				}
				nextTick += tick
			}
			if err := detector.Ingest(tab, subjects[i], nil, bodies[round*n+i], at); err != nil {
				return ScaleReport{}, fmt.Errorf("scale: %w", err)
			}
		}
		if opts.Progress != nil && (round+1)%beatsPerSec == 0 {
			opts.Progress()
		}
	}
	cpu, wall := processCPU()-cpu0, time.Since(start)
	simulated := float64(opts.Seconds)
	hb := int64(len(bodies))
	if st, _ := tab.State(membership.Key("platform-scale", "i0")); st != membership.Alive {
		return ScaleReport{}, fmt.Errorf("scale: instance 0 is %q after steady heartbeats, want alive", st)
	}
	return ScaleReport{
		Instances: n, Heartbeats: hb, Seconds: simulated,
		CPUSeconds: cpu.Seconds(), Cores: cpu.Seconds() / simulated,
		NsPerHeartbeat: float64(cpu.Nanoseconds()) / float64(hb),
		WritesPerSec:   float64(writes) / simulated, TransitionsPerSec: float64(transitions) / simulated,
		WallSeconds: wall.Seconds(),
	}, nil
}

// Result returns the report as a bench row: events are heartbeats, the
// rate is heartbeats per CPU second.
func (r ScaleReport) Result() bench.Result {
	res := bench.Result{
		Name:   fmt.Sprintf("detector/scale-%d", r.Instances),
		Events: r.Heartbeats, Seconds: r.CPUSeconds,
		Extra: map[string]float64{
			"cores": r.Cores, "ns_per_heartbeat": r.NsPerHeartbeat,
			"member_writes_per_sec": r.WritesPerSec, "transitions_per_sec": r.TransitionsPerSec,
		},
	}
	if r.CPUSeconds > 0 {
		res.EventsPerSec = float64(r.Heartbeats) / r.CPUSeconds
	}
	return res
}

// processCPU returns the user+system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
