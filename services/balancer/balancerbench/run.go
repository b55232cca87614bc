package balancerbench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

type requester func(ctx context.Context) (*nats.Msg, error)

// Run starts the test instances and a balancer, then runs every mode in
// turn and returns their figures. Every mode's clients share one
// connection, opened once, so the modes differ only in how they choose.
func Run(ctx context.Context, o Options) ([]ModeResult, error) {
	o.setDefaults()
	if o.Connect == nil || o.JS == nil {
		return nil, fmt.Errorf("balancerbench: Connect and JS are required")
	}
	f, err := startFleet(ctx, o)
	if err != nil {
		return nil, err
	}
	defer f.close()
	bnc, err := o.Connect()
	if err != nil {
		return nil, err
	}
	defer bnc.Close()
	p := balancer.DefaultPolicy()
	p.Blackout, p.SlowStart = time.Second, 0
	bal, err := balancer.New(balancer.Options{
		Conn: bnc, Logger: quiet, Policy: p, TickInterval: 250 * time.Millisecond,
		StatsInterval: time.Second, LeaderInterval: -1,
		Router: balancer.RouterOptions{Discovery: time.Second},
	})
	if err != nil {
		return nil, err
	}
	bctx, stopBal := context.WithCancel(ctx)
	var bwg sync.WaitGroup
	bwg.Go(func() { _ = bal.Run(bctx) })
	defer func() { stopBal(); bwg.Wait() }()
	select {
	case <-bal.Ready():
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("balancerbench: balancer not ready")
	}
	weights, err := o.JS.KeyValue(ctx, streams.BucketWeights)
	if err != nil {
		return nil, err
	}
	cnc, err := o.Connect()
	if err != nil {
		return nil, err
	}
	defer cnc.Close()
	// Let the weights settle past the blackout.
	if err := jsapi.Sleep(ctx, 3*time.Second); err != nil {
		return nil, err
	}

	newReq := func(mode string) (requester, *balancer.Router, error) {
		switch mode {
		case "queue_group":
			return func(ctx context.Context) (*nats.Msg, error) {
				return cnc.RequestWithContext(ctx, Subject, []byte("{}"))
			}, nil, nil
		case "proxy":
			return func(ctx context.Context) (*nats.Msg, error) {
				return cnc.RequestWithContext(ctx, streams.RouteSubject(Subject), []byte("{}"))
			}, nil, nil
		}
		s, ok := strategies[mode]
		if !ok {
			return nil, nil, fmt.Errorf("balancerbench: unknown mode %q", mode)
		}
		ro := balancer.RouterOptions{Conn: cnc, Weights: weights, Logger: quiet, Discovery: time.Second}
		ro.Strategy, ro.Peak = s, mode == "router_peak"
		router, err := balancer.NewRouter(ro)
		if err != nil {
			return nil, nil, err
		}
		if err := router.Start(ctx); err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context) (*nats.Msg, error) {
			return router.Request(ctx, Subject, []byte("{}"))
		}, router, nil
	}
	if o.Interleave {
		return runInterleaved(ctx, o, f, newReq)
	}

	var out []ModeResult
	for _, mode := range o.Modes {
		req, router, err := newReq(mode)
		if err != nil {
			return out, err
		}
		var res ModeResult
		if mode == ModeKill {
			res = runKill(ctx, o, f, router, req)
		} else {
			res = runMode(ctx, o, f, mode, req)
		}
		if router != nil {
			router.Stop()
		}
		out = append(out, res)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}

// runInterleaved runs every mode but the kill mode at once: each client
// sends its requests through the modes in turn, so every mode meets the
// same moments of machine noise. Instances answer every request
// concurrently, so one mode's choices do not slow another's requests.
func runInterleaved(ctx context.Context, o Options, f *fleet, newReq func(string) (requester, *balancer.Router, error)) ([]ModeResult, error) {
	var modes []string
	var reqs []requester
	for _, mode := range o.Modes {
		if mode == ModeKill {
			continue
		}
		req, router, err := newReq(mode)
		if err != nil {
			return nil, err
		}
		if router != nil {
			defer router.Stop()
		}
		modes, reqs = append(modes, mode), append(reqs, req)
	}
	third := o.Duration / 3
	samples, errs, start := drive(ctx, o, reqs, func(el time.Duration) {
		f.slow[0].Store(el >= third && el < 2*third)
	})
	f.slow[0].Store(false)
	elapsed := time.Since(start)
	out := make([]ModeResult, len(modes))
	for i, mode := range modes {
		var mine []sample
		for _, s := range samples {
			if s.mode == i {
				mine = append(mine, s)
			}
		}
		out[i] = summarise(mode, o, mine)
		out[i].Elapsed, out[i].Errors = elapsed, errs[i]
	}
	return out, ctx.Err()
}

// strategies are the modes that use a Router.
var strategies = map[string]balancer.Strategy{
	"round_robin": balancer.RoundRobin, "weights": balancer.Weighted,
	"router": balancer.P2C, "router_peak": balancer.P2C, ModeKill: balancer.P2C,
}

// sample is one answered request.
type sample struct {
	at, latency, service time.Duration // since the mode's start
	instance             int
	mode                 int // index into drive's requesters
}

// drive runs o.Concurrency closed-loop clients until the deadline, each
// sending its requests through reqs in turn; each second it calls tick
// with the time elapsed. It returns the answered requests and the
// failures by requester, waiting for the requests still out at the
// deadline.
func drive(ctx context.Context, o Options, reqs []requester, tick func(time.Duration)) (samples []sample, errs []int64, start time.Time) {
	errs = make([]int64, len(reqs))
	start = time.Now()
	rctx, cancel := context.WithDeadline(ctx, start.Add(o.Duration))
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			var mine []sample
			failed := make([]int64, len(reqs))
			k := rand.IntN(len(reqs))
			next := time.Now()
			for rctx.Err() == nil {
				if o.Rate > 0 {
					// Paced: every mode offers the machine the same load.
					next = next.Add(time.Duration(float64(o.Concurrency) / o.Rate * float64(time.Second)))
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
					}
				}
				k = (k + 1) % len(reqs)
				t0 := time.Now()
				qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
				m, err := reqs[k](qctx)
				qcancel()
				d := time.Since(t0)
				if err != nil {
					// A request still waiting at the deadline is not
					// cancelled by it: its failure counts too.
					if ctx.Err() == nil {
						failed[k]++
					}
					continue
				}
				i, svc := parseAnswer(m.Data)
				mine = append(mine, sample{at: t0.Sub(start), latency: d, service: svc, instance: i, mode: k})
			}
			mu.Lock()
			samples = append(samples, mine...)
			for i, n := range failed {
				errs[i] += n
			}
			mu.Unlock()
		})
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-rctx.Done():
			done = true
		case <-t.C:
			if o.Progress != nil {
				o.Progress()
			}
			tick(time.Since(start))
		}
	}
	wg.Wait()
	return samples, errs, start
}

// runMode runs the scenario once with req: healthy, slow, recovered.
func runMode(ctx context.Context, o Options, f *fleet, mode string, req requester) ModeResult {
	third := o.Duration / 3
	samples, errs, start := drive(ctx, o, []requester{req}, func(el time.Duration) {
		f.slow[0].Store(el >= third && el < 2*third)
	})
	f.slow[0].Store(false)
	res := summarise(mode, o, samples)
	res.Elapsed, res.Errors = time.Since(start), errs[0]
	return res
}

// summarise computes a mode's figures from its samples.
func summarise(mode string, o Options, samples []sample) ModeResult {
	res := ModeResult{
		Mode: mode, All: &bench.Latencies{}, Slow: &bench.Latencies{}, Healthy: &bench.Latencies{},
		SlowService: &bench.Latencies{}, Recovery: -1, Requests: int64(len(samples)),
	}
	res.Instances = make([]InstanceFigures, o.Instances)
	for i := range res.Instances {
		res.Instances[i] = InstanceFigures{Latency: &bench.Latencies{}, Overshoot: &bench.Latencies{}}
	}
	third := o.Duration / 3
	secs := int(o.Duration/time.Second) + 2
	perSec := make([][2]int, secs) // [second]{total, slow instance}
	var slowN, over10, over10Slow int
	over := make([]int, o.Instances)
	for _, s := range samples {
		res.All.Add(s.latency)
		switch {
		case s.at < third:
			res.Healthy.Add(s.latency)
		case s.at < 2*third:
			res.Slow.Add(s.latency)
			res.SlowService.Add(s.service)
			slowN++
			long := s.latency > 10*time.Millisecond
			if long {
				over10++
			}
			if s.instance >= 0 && s.instance < o.Instances {
				in := &res.Instances[s.instance]
				in.Requests++
				in.Latency.Add(s.latency)
				in.Overshoot.Add(max(0, s.latency-s.service))
				if long {
					over[s.instance]++
					if s.instance == 0 {
						over10Slow++
					}
				}
			}
		}
		if sec := int(s.at / time.Second); sec < secs {
			perSec[sec][0]++
			if s.instance == 0 {
				perSec[sec][1]++
			}
		}
	}
	for i := range res.Instances {
		if n := res.Instances[i].Requests; n > 0 {
			res.Instances[i].Over10 = float64(over[i]) / float64(n)
		}
	}
	if slowN > 0 {
		res.Over10 = float64(over10) / float64(slowN)
	}
	if over10 > 0 {
		res.Over10Slow = float64(over10Slow) / float64(over10)
	}
	share := func(from, to int) float64 {
		var n, s int
		for i := max(0, from); i < min(to, secs); i++ {
			n += perSec[i][0]
			s += perSec[i][1]
		}
		if n == 0 {
			return 0
		}
		return float64(s) / float64(n)
	}
	t1, t2, end := int(third/time.Second), int(2*third/time.Second), int(o.Duration/time.Second)
	res.SlowShare = share(t1+1, t2) // skip the second in which it turned slow
	res.RecoveredShare = share(end-5, end)
	for s := t2 + 1; s < end; s++ {
		if share(s, s+1) >= 0.15 {
			res.Recovery = time.Duration(s+1)*time.Second - 2*third
			break
		}
	}
	return res
}
