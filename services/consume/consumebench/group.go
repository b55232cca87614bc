package consumebench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/txn"
)

// What this file exports lets benchmarks outside the package (the
// side-by-side with orbit.go pcgroups) run the same rows on events of
// their own, measured the same way.

// startMember runs member id with base's options on a connection of its
// own.
func (r *Runner) startMember(ctx context.Context, base consume.Options, id string) (*member, error) {
	nc, err := r.t.Connect()
	if err != nil {
		return nil, err
	}
	store, err := txn.NewStore(nc, txn.WithLogger(r.o.Logger))
	if err != nil {
		nc.Close()
		return nil, err
	}
	o := base
	o.Conn, o.Store, o.Member, o.Logger = nc, store, id, r.o.Logger
	m, err := consume.New(o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	mb := &member{id: id, m: m, nc: nc, stop: cancel, done: make(chan error, 1)}
	go func() { mb.done <- m.Run(mctx) }()
	return mb, nil
}

// Running is a member running in this process on a connection of its
// own (StartMember).
type Running struct {
	*consume.Member
	mb *member
}

// StartMember runs member id with base's options (Conn, Store, Member
// and Logger are filled in) on a connection of its own.
func (r *Runner) StartMember(ctx context.Context, base consume.Options, id string) (*Running, error) {
	mb, err := r.startMember(ctx, base, id)
	if err != nil {
		return nil, err
	}
	return &Running{Member: mb.m, mb: mb}, nil
}

// Kill ends the member as a crash would: its connection closes first, so
// it can neither commit nor leave the group, and its partitions move only
// once its membership expires. Then it stops and Kill returns.
func (m *Running) Kill() {
	m.mb.nc.Close()
	_ = stopMembers([]*member{m.mb}, memberStop) // its connection is closed: it stops
}

// Stop stops the member (it leaves the group) and closes its connection;
// it fails if the member did not stop within 30 seconds.
func (m *Running) Stop() error { return stopMembers([]*member{m.mb}, memberStop) }

// PublishPlain stores n events under prefix, one message each: event i
// on topic prefix+"t"+(i mod Topics) with payload i/Topics.
func (r *Runner) PublishPlain(ctx context.Context, prefix string, n int) error {
	return r.publishPlain(ctx, prefix, n)
}

// Feed publishes events under prefix at rate per second over all topics
// until ctx ends.
func (r *Runner) Feed(ctx context.Context, prefix string, rate int) { r.feed(ctx, prefix, rate) }

// Usage is the process's CPU time at one moment (getrusage: its own and
// its waited-for children's).
type Usage struct{ c cpu }

// CPUNow returns the process's CPU time now.
func CPUNow() Usage { return Usage{cpuNow()} }

// Finish fills res from events read in elapsed, with the CPU seconds used
// since u (Extra cpu_s and cpu_s_per_M), as every row of this package.
func (u Usage) Finish(res *bench.Result, events int64, elapsed time.Duration) {
	finish(res, events, elapsed, u.c.since())
}

// seen counts the distinct events acknowledged (by stream sequence and
// index in the envelope) and the acknowledgements beyond them.
type seen struct {
	mu   sync.Mutex
	bits map[uint64][]uint64 // sequence -> a bit per index
	n    int64
	dups int64
}

func newSeen() *seen { return &seen{bits: map[uint64][]uint64{}} }

// add records ds and returns the distinct events so far.
func (s *seen) add(ds []consume.Delivery) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		seq, i := d.Event.Pos.Seq, d.Event.Pos.Index
		b := s.bits[seq]
		for len(b) <= i/64 {
			b = append(b, 0)
		}
		if bit := uint64(1) << (i % 64); b[i/64]&bit == 0 {
			b[i/64] |= bit
			s.n++
		} else {
			s.dups++
		}
		s.bits[seq] = b
	}
	return s.n
}

func (s *seen) counts() (distinct, dups int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.dups
}

// GroupAck is the per-event settlement row: Members at-least-once
// members of a fresh group hand out the envelope events by Next (up to
// 500 at a time, one caller per member) and the caller acknowledges each
// with AckDelivery. Timed from the members' start to the last event
// acknowledged.
func (r *Runner) GroupAck(ctx context.Context) (bench.Result, error) {
	return r.GroupAckOn(ctx, fmt.Sprintf("consume/group-%d-ack", r.o.Members), "benchack", envPrefix+">", int64(r.o.Events))
}

// GroupAckOn is GroupAck's row named name for group reading the n events
// under filter (for benchmarks that store their own events).
func (r *Runner) GroupAckOn(ctx context.Context, name, group, filter string, n int64) (bench.Result, error) {
	res := bench.Result{Name: name}
	prog := bench.NewProgress(r.o.Progress, res.Name, n)
	defer prog.Stop()
	c0, t0 := cpuNow(), time.Now()
	ms, err := r.startMembers(ctx, group, filter, nil)
	if err != nil {
		return res, err
	}
	var first atomic.Int64 // first: nanoseconds from t0 to the first event handed out
	// At least once, a rebalance may hand out again an event settled less
	// than a tick before (as the group forms): the row ends when n
	// distinct events were acknowledged and reports the extra ones.
	acked := newSeen()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	// errs gets at most two errors per member: its caller's and its Run's.
	errs := make(chan error, 2*len(ms))
	byMember := make([]atomic.Int64, len(ms))
	watching := make(chan struct{})
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			for actx.Err() == nil {
				ds, err := m.m.Next(actx, 500, 100*time.Millisecond)
				if err != nil {
					if actx.Err() == nil {
						errs <- fmt.Errorf("member %s: next: %w", m.id, err)
					}
					return
				}
				if len(ds) > 0 && first.Load() == 0 {
					first.CompareAndSwap(0, int64(time.Since(t0)))
				}
				for _, d := range ds {
					if err := m.m.AckDelivery(d); err != nil {
						errs <- fmt.Errorf("member %s: ack: %w", m.id, err)
						return
					}
				}
				byMember[i].Add(int64(len(ds)))
				if acked.add(ds) >= n {
					cancel()
				}
				prog.Add(int64(len(ds)))
			}
		})
		// A member whose Run returns early hands out nothing more, and
		// Next does not say so: without this the row waited for its
		// partitions' events until ctx ended.
		wg.Go(func() {
			select {
			case err := <-m.done:
				m.done <- err // kept for stopMembers
				if actx.Err() == nil {
					errs <- fmt.Errorf("member %s stopped before the row ended: %v", m.id, err)
				}
			case <-watching:
			}
		})
	}
	select {
	case <-actx.Done():
	case err = <-errs:
	}
	cancel()
	close(watching)
	wg.Wait()
	el, cs := time.Since(t0), c0.since()
	serr := stopMembers(ms, memberStop)
	distinct, dups := acked.counts()
	finish(&res, distinct, el, cs)
	res.Extra["duplicates"] = float64(dups)
	// The group's own start (joining, the leader's first assignment,
	// taking the partitions) is part of the row; first_s shows its share.
	res.Extra["first_s"] = time.Duration(first.Load()).Seconds()
	if f := time.Duration(first.Load()); f > 0 && el > f {
		res.Extra["after_first_ev_s"] = float64(distinct) / (el - f).Seconds()
	}
	if err == nil && distinct < n {
		per := make([]string, len(ms))
		for i, m := range ms {
			per[i] = fmt.Sprintf("%s %d", m.id, byMember[i].Load())
		}
		err = fmt.Errorf("waited for %d distinct events acknowledged, got %d (and %d again; by member: %s): %w",
			n, distinct, dups, strings.Join(per, ", "), ctx.Err())
	}
	return res, errors.Join(err, serr)
}
