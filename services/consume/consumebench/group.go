package consumebench

import (
	"context"
	"sync"
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
	mb := &member{m: m, nc: nc, stop: cancel, done: make(chan error, 1)}
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
	stopMembers([]*member{m.mb})
}

// Stop stops the member (it leaves the group) and closes its connection.
func (m *Running) Stop() { stopMembers([]*member{m.mb}) }

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
