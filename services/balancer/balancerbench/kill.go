package balancerbench

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

// KillFigures are what the kill mode measures: an instance's connection
// is closed, as when its process dies, a third of the way into the run.
type KillFigures struct {
	// InFlight is how many requests the router had outstanding on the
	// killed instance when it died.
	InFlight int64
	// Lost is how many requests failed after the kill.
	Lost int64
	// LastChoice is how long after the kill the router last sent the
	// killed instance a request, as far as a 1 ms poll sees.
	LastChoice time.Duration
	// Forgotten is how long after the kill the router dropped the killed
	// instance from its choices (-1: not within 5 s).
	Forgotten time.Duration
}

// runKill runs the router with every instance healthy and kills the last
// instance a third of the way in.
func runKill(ctx context.Context, o Options, f *fleet, router *balancer.Router, req requester) ModeResult {
	victim := len(f.conns) - 1
	key := streams.MemberKey("platform-benchwork", f.ids[victim])
	routed := func() (uint64, int64, bool) {
		st, ok := router.Instances()[key]
		return st.Routed, st.InFlight, ok
	}
	var killed atomic.Bool
	kf := KillFigures{Forgotten: -1}
	var killedAt time.Time
	watch := make(chan struct{})
	samples, errs, start := drive(ctx, o, []requester{req}, func(el time.Duration) {
		if el < o.Duration/3 || killed.Swap(true) {
			return
		}
		_, kf.InFlight, _ = routed()
		f.conns[victim].Close()
		killedAt = time.Now()
		go func() {
			// Watch the router's count for the victim: its last change
			// is the router's last choice of it.
			defer close(watch)
			// Once the router forgets the victim it cannot choose it.
			last, _, known := routed()
			for known && time.Since(killedAt) < 5*time.Second && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
				switch n, _, ok := routed(); {
				case !ok:
					known, kf.Forgotten = false, time.Since(killedAt)
				case n != last:
					last, kf.LastChoice = n, time.Since(killedAt)
				}
			}
		}()
	})
	if killed.Load() {
		<-watch
	}
	res := summarise(ModeKill, o, samples)
	res.Elapsed, res.Errors = time.Since(start), errs[0]
	kf.Lost = errs[0]
	res.Kill = &kf
	return res
}
