package balancerbench

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

type requester func(ctx context.Context) (*nats.Msg, error)

// Run starts the test instances and a balancer, then runs every mode in
// turn and returns their figures.
func Run(ctx context.Context, o Options) ([]ModeResult, error) {
	o.fill()
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
	// Let the weights settle past the blackout.
	if err := sleep(ctx, 3*time.Second); err != nil {
		return nil, err
	}

	var out []ModeResult
	for _, mode := range Modes {
		cnc, err := o.Connect()
		if err != nil {
			return out, err
		}
		var req requester
		var router *balancer.Router
		switch mode {
		case "queue_group":
			req = func(ctx context.Context) (*nats.Msg, error) {
				return cnc.RequestWithContext(ctx, Subject, []byte("{}"))
			}
		case "proxy":
			req = func(ctx context.Context) (*nats.Msg, error) {
				return cnc.RequestWithContext(ctx, streams.RouteSubject(Subject), []byte("{}"))
			}
		default:
			ro := balancer.RouterOptions{Conn: cnc, Weights: weights, Logger: quiet, Discovery: time.Second}
			ro.Strategy = map[string]balancer.Strategy{"round_robin": balancer.RoundRobin, "weights": balancer.Weighted, "router": balancer.P2C}[mode]
			if router, err = balancer.NewRouter(ro); err != nil {
				cnc.Close()
				return out, err
			}
			if err := router.Start(ctx); err != nil {
				cnc.Close()
				return out, err
			}
			req = func(ctx context.Context) (*nats.Msg, error) {
				return router.Request(ctx, Subject, []byte("{}"))
			}
		}
		res := runMode(ctx, o, f, mode, req)
		if router != nil {
			router.Stop()
		}
		cnc.Close()
		out = append(out, res)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// runMode runs the scenario once with req.
func runMode(ctx context.Context, o Options, f *fleet, mode string, req requester) ModeResult {
	res := ModeResult{Mode: mode, All: &bench.Latencies{}, Slow: &bench.Latencies{}, Healthy: &bench.Latencies{}, Recovery: -1}
	third := o.Duration / 3
	secs := int(o.Duration/time.Second) + 2
	perSec := make([][]atomic.Int64, secs) // [second][0: total, 1: slow instance]
	for i := range perSec {
		perSec[i] = make([]atomic.Int64, 2)
	}
	var requests, errs atomic.Int64
	start := time.Now()
	rctx, cancel := context.WithDeadline(ctx, start.Add(o.Duration))
	defer cancel()
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			for rctx.Err() == nil {
				t0 := time.Now()
				qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
				m, err := req(qctx)
				qcancel()
				d := time.Since(t0)
				at := t0.Sub(start)
				if err != nil {
					if rctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				requests.Add(1)
				res.All.Add(d)
				switch {
				case at < third:
					res.Healthy.Add(d)
				case at < 2*third:
					res.Slow.Add(d)
				}
				if s := int(at / time.Second); s < secs {
					perSec[s][0].Add(1)
					if instanceOf(m.Data) == 0 {
						perSec[s][1].Add(1)
					}
				}
			}
		})
	}
	ticker := time.NewTicker(time.Second)
	phase := 0
	for phase < 3 {
		select {
		case <-rctx.Done():
			phase = 3
		case <-ticker.C:
			if o.Progress != nil {
				o.Progress()
			}
			el := time.Since(start)
			if phase == 0 && el >= third {
				f.slow[0].Store(true)
				phase = 1
			}
			if phase == 1 && el >= 2*third {
				f.slow[0].Store(false)
				phase = 2
			}
		}
	}
	ticker.Stop()
	f.slow[0].Store(false)
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Requests, res.Errors = requests.Load(), errs.Load()
	share := func(from, to int) float64 {
		var n, s int64
		for i := max(0, from); i < min(to, secs); i++ {
			n += perSec[i][0].Load()
			s += perSec[i][1].Load()
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

// instanceOf reads n from the test service's answer {"i":n}.
func instanceOf(b []byte) int {
	b, ok := bytes.CutPrefix(b, []byte(`{"i":`))
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(string(bytes.TrimSuffix(b, []byte("}"))))
	if err != nil {
		return -1
	}
	return n
}
