// Package balancerbench measures request routing on a live cluster with
// Linkerd's "beyond round robin" scenario: instances of a test micro
// service whose service time is a short sleep with jitter, one of which
// turns ten times slower for the middle third of the run and recovers.
// The queue group, round robin, the reference document's weights alone,
// the P2C router and the route.<subject> proxy are measured in turn, in
// one run, against the same instances.
package balancerbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/service"
)

// Subject is the test service's endpoint.
const Subject = "benchwork.do"

// ModeKill is the mode in which an instance is killed mid-run.
const ModeKill = "router_kill"

// Modes, in the order they run by default. The kill mode runs last: it
// leaves one instance fewer.
// router_peak is the router with Finagle's Peak-EWMA latency estimate
// (RouterOptions.Peak), for comparison.
var Modes = []string{"queue_group", "round_robin", "weights", "router_peak", "router", "proxy", ModeKill}

// Options configure the benchmark.
type Options struct {
	// Connect opens a connection to the cluster. Required.
	Connect func() (*nats.Conn, error)
	// JS is a JetStream context on the cluster. Required.
	JS jetstream.JetStream
	// Instances of the test service (5; at least 2).
	Instances int
	// ServiceTime is the mean sleep per request (2ms), Jitter its spread
	// either way (0.5ms).
	ServiceTime, Jitter time.Duration
	// SlowFactor multiplies the slow instance's service time (10).
	SlowFactor float64
	// Duration of each mode (30s): healthy, slow, recovered thirds.
	Duration time.Duration
	// Concurrency is the number of closed-loop clients (8).
	Concurrency int
	// Rate paces the clients to this many requests a second in all
	// (0: each sends its next request as soon as it has an answer).
	// Closed-loop clients send more when the routing is better, which
	// loads a small machine more and adds scheduling noise to the better
	// mode; a rate every mode sustains offers each the same load.
	Rate float64
	// Modes to run, in order (default Modes).
	Modes []string
	// Interleave runs the modes at once, each client taking the next mode
	// for each request, so that every mode meets the same machine noise
	// (the kill mode is left out).
	Interleave bool
	// Progress is called once a second (nil: not).
	Progress func()
}

func (o *Options) setDefaults() {
	if o.Instances < 2 {
		o.Instances = 5
	}
	if o.ServiceTime == 0 {
		o.ServiceTime = 2 * time.Millisecond
	}
	if o.Jitter == 0 {
		o.Jitter = o.ServiceTime / 4
	}
	if o.SlowFactor == 0 {
		o.SlowFactor = 10
	}
	if o.Duration == 0 {
		o.Duration = 30 * time.Second
	}
	if o.Concurrency == 0 {
		o.Concurrency = 8
	}
	if len(o.Modes) == 0 {
		o.Modes = Modes
	}
}

// ModeResult is one mode's figures.
type ModeResult struct {
	Mode string
	// All, Slow and Healthy are the latencies of the whole run, of the
	// slow third and of the first (healthy) third.
	All, Slow, Healthy *bench.Latencies
	// SlowService is the service time the chosen instances were asked to
	// take in the slow third: the latency each request would have had on
	// an idle machine, what routing alone decides.
	SlowService *bench.Latencies
	// Instances breaks the slow third down by answering instance
	// (index 0 is the slow one).
	Instances []InstanceFigures
	// Over10 is the share of the slow third's requests that took over
	// 10 ms, Over10Slow the share of those the slow instance answered.
	Over10, Over10Slow float64
	// Requests and Errors count the whole run.
	Requests, Errors int64
	// SlowShare is the slow instance's share of requests in the slow
	// third; RecoveredShare in the last 5 s of the run.
	SlowShare, RecoveredShare float64
	// Recovery is how long after the slow instance recovered its share of
	// a 1 s window first reached 15% (-1: never).
	Recovery time.Duration
	Elapsed  time.Duration
	// Kill is set for the kill mode only.
	Kill *KillFigures
}

// InstanceFigures are one instance's figures in the slow third.
type InstanceFigures struct {
	// Requests it answered.
	Requests int
	// Latency as the client saw it.
	Latency *bench.Latencies
	// Overshoot is the latency beyond the service time the instance was
	// asked to take: NATS hops plus the machine's scheduling noise.
	Overshoot *bench.Latencies
	// Over10 is the share of its answers that took over 10 ms.
	Over10 float64
}

// Result returns the mode as a bench result line.
func (m ModeResult) Result() bench.Result {
	r := bench.Result{Name: "balancer " + m.Mode}
	r.Finish(m.Requests, m.Elapsed, m.All)
	r.Extra = map[string]float64{
		"p999_ms":           m.All.Percentile(99.9),
		"slow_p50_ms":       m.Slow.Percentile(50),
		"slow_p99_ms":       m.Slow.Percentile(99),
		"slow_p999_ms":      m.Slow.Percentile(99.9),
		"slow_service_p99":  m.SlowService.Percentile(99),
		"slow_over10_share": m.Over10,
		"healthy_p50_ms":    m.Healthy.Percentile(50),
		"healthy_p99_ms":    m.Healthy.Percentile(99),
		"slow_share":        m.SlowShare,
		"recovered_share":   m.RecoveredShare,
		"recovery_s":        m.Recovery.Seconds(),
		"errors":            float64(m.Errors),
	}
	if k := m.Kill; k != nil {
		r.Extra["kill_in_flight"] = float64(k.InFlight)
		r.Extra["kill_lost"] = float64(k.Lost)
		r.Extra["kill_last_choice_ms"] = float64(k.LastChoice.Microseconds()) / 1000
		r.Extra["kill_forgotten_ms"] = float64(k.Forgotten.Microseconds()) / 1000
	}
	return r
}

// quiet discards the logs of the benchmark's own services.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fleet is the running test instances.
type fleet struct {
	slow   []atomic.Bool
	stop   context.CancelFunc
	done   sync.WaitGroup
	conns  []*nats.Conn
	ids    []string // micro instance ids, by index
	factor float64
}

func startFleet(ctx context.Context, o Options) (*fleet, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &fleet{slow: make([]atomic.Bool, o.Instances), stop: cancel, factor: o.SlowFactor}
	for i := range o.Instances {
		nc, err := o.Connect()
		if err != nil {
			f.close()
			return nil, fmt.Errorf("connect instance %d: %w", i, err)
		}
		f.conns = append(f.conns, nc)
		svc, err := service.New(service.Options{
			Conn: nc, Name: "benchwork", HeartbeatInterval: 250 * time.Millisecond, Logger: quiet,
			Endpoints: []service.Endpoint{{
				Name: "do", Subject: Subject, Concurrency: 256,
				Handler: func(_ context.Context, r *service.Request) {
					d := o.ServiceTime + time.Duration((rand.Float64()*2-1)*float64(o.Jitter))
					if f.slow[i].Load() {
						d = time.Duration(float64(d) * f.factor)
					}
					time.Sleep(d)
					// The answer names the instance and the service time it
					// was asked to take, so the client can tell routing
					// from machine noise.
					r.Relay(&nats.Msg{Data: answer(i, d)})
				},
			}},
		})
		if err != nil {
			f.close()
			return nil, err
		}
		f.done.Go(func() { _ = svc.Run(ctx) })
		select {
		case <-svc.Ready():
			f.ids = append(f.ids, svc.ID())
		case <-time.After(10 * time.Second):
			f.close()
			return nil, errors.New("test instance not ready")
		}
	}
	return f, nil
}

func (f *fleet) close() {
	f.stop()
	f.done.Wait()
	for _, c := range f.conns {
		c.Close()
	}
}

// answer is the test service's answer: {"i":<instance>,"us":<service time>}.
func answer(i int, d time.Duration) []byte {
	b := make([]byte, 0, 32)
	b = append(b, `{"i":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `,"us":`...)
	b = strconv.AppendInt(b, d.Microseconds(), 10)
	return append(b, '}')
}

// parseAnswer reads an answer; instance -1 when it is not one.
func parseAnswer(b []byte) (instance int, service time.Duration) {
	var a struct {
		I  *int  `json:"i"`
		US int64 `json:"us"`
	}
	if json.Unmarshal(b, &a) != nil || a.I == nil {
		return -1, 0
	}
	return *a.I, time.Duration(a.US) * time.Microsecond
}
